//! Being written; this file is replaced by the lab it names.
fn main() {
    eprintln!("not built yet");
    std::process::exit(1);
}
