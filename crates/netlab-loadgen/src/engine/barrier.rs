//! A barrier that a dying thread can break. `std::sync::Barrier` waits for every party
//! forever: an engine thread that panicked before reaching it would leave the others, and the
//! main thread, waiting for good. Here a thread that unwinds breaks every barrier on its way
//! out ([`OnPanic`]), and whoever waits, or comes later, gets [`Broken`] instead.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Every party waits until all have arrived, unless the barrier is broken.
pub(crate) struct Barrier {
    parties: usize,
    state: Mutex<State>,
    all_here: Condvar,
}

struct State {
    arrived: usize,
    /// Counts the times every party arrived, so a waiter knows its own round has passed.
    round: u64,
    broken: bool,
}

/// The barrier was broken: a party will never arrive.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Broken;

impl Barrier {
    pub(crate) fn new(parties: usize) -> Barrier {
        Barrier {
            parties,
            state: Mutex::new(State {
                arrived: 0,
                round: 0,
                broken: false,
            }),
            all_here: Condvar::new(),
        }
    }

    /// Waits for every party, or returns `Broken` once the barrier is (or was) broken.
    pub(crate) fn wait(&self) -> Result<(), Broken> {
        let mut state = self.lock();
        if state.broken {
            return Err(Broken);
        }
        let round = state.round;
        state.arrived += 1;
        if state.arrived == self.parties {
            state.arrived = 0;
            state.round += 1;
            self.all_here.notify_all();
            return Ok(());
        }
        while state.round == round && !state.broken {
            state = self
                .all_here
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.round != round {
            Ok(())
        } else {
            Err(Broken)
        }
    }

    /// Wakes every waiter with `Broken`, now and for good.
    pub(crate) fn break_it(&self) {
        self.lock().broken = true;
        self.all_here.notify_all();
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.lock().broken
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; a poisoned one still holds valid counts.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs its closure if the thread holding it unwinds from a panic (to break the barriers).
pub(crate) struct OnPanic<F: FnMut()>(pub(crate) F);

impl<F: FnMut()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn all_parties_pass_together() {
        let barrier = Arc::new(Barrier::new(3));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&barrier);
                std::thread::spawn(move || b.wait())
            })
            .collect();
        assert_eq!(barrier.wait(), Ok(()));
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_panicking_party_releases_the_others() {
        let barrier = Arc::new(Barrier::new(3));
        let waiter = {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || b.wait())
        };
        let dying = {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let _guard = OnPanic(|| b.break_it());
                std::thread::sleep(Duration::from_millis(50));
                panic!("a party dies before it arrives");
            })
        };
        assert!(dying.join().is_err());
        assert_eq!(waiter.join().unwrap(), Err(Broken));
        assert_eq!(
            barrier.wait(),
            Err(Broken),
            "late comers do not wait either"
        );
        assert!(barrier.is_broken());
    }
}
