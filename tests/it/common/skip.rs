//! Tests that need something this machine may lack (a browser, root for a private mount):
//! skipped where it is missing, saying so where people see it, and failed under `CI=true`,
//! where it is always there.

/// Fails the test under `CI=true`, with `in_ci` saying why CI should have what is missing;
/// elsewhere says that the test did not run and why, and returns so that the caller can
/// return. Call it on the test's own thread, whose name is the test's.
///
/// The line goes straight to the process's stderr, which libtest's capture (`cargo test`)
/// does not intercept, unlike `println!` and `eprintln!`; nextest shows it through the
/// `success-output` of `.config/nextest.toml`.
pub fn skip_unless_ci(why: &str, in_ci: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{why}: {in_ci}");
    }
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    let _ = writeln!(stderr, "\nSKIPPED {test}: {why}");
}
