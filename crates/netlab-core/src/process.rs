//! Process creation for the process labs: the one place `fork(2)` is called.
