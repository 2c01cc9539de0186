//! Links the `flywheel` binary with compressed debug sections on Linux: the line tables that
//! give panics and backtraces file:line (the release profile in the root `Cargo.toml`) take a
//! third of the room, and the standard library's backtraces read them as they are.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
