//! With the `tch` feature, compiles `src/model/torch_native.cpp` against the libtorch that
//! torch-sys found (it publishes its lib folder as `DEP_TCH_LIBTORCH_LIB`). The default build
//! compiles nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "tch")]
    torch_native();
}

#[cfg(feature = "tch")]
fn torch_native() {
    use std::path::PathBuf;
    println!("cargo:rerun-if-changed=src/model/torch_native.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys publishes libtorch's lib folder (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib.parent().expect("libtorch's lib folder has a parent");
    // PyTorch wheels since 2.7 and libtorch's cxx11 builds use the new ABI, as torch-sys assumes.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // libtorch is a release build: its headers lay out some structs (RecordFunction's) and
        // compile debug-only asserts differently without NDEBUG.
        .define("NDEBUG", None)
        .file("src/model/torch_native.cpp")
        .compile("ferlab_torch_native");
}
