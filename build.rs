//! Build script of the root package: compiles lab 12's C echo loop (labs/12-c/echo.c) with the
//! `cc` crate. With no C compiler the build still succeeds: `echo-c` is then built without the
//! loop and says so when run (`echo-c: not built: ...`, exit 69), and `loadgen compare` reports
//! it as skipped.

fn main() {
    println!("cargo::rerun-if-changed=labs/12-c/echo.c");
    println!("cargo::rustc-check-cfg=cfg(netlab_c)");
    let compiled = cc::Build::new()
        .file("labs/12-c/echo.c")
        .warnings(true)
        .extra_warnings(true)
        .try_compile("netlab_c_echo");
    match compiled {
        Ok(()) => println!("cargo::rustc-cfg=netlab_c"),
        Err(e) => {
            let reason = e.to_string().replace('\n', " ");
            println!("cargo::warning=echo-c is built without its C loop: {reason}");
            println!("cargo::rustc-env=NETLAB_C_NOT_BUILT={reason}");
        }
    }
}
