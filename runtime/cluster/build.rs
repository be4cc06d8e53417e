//! Compiles the vendored Kubernetes .proto files into one descriptor set, which
//! `protobuf` reads protobuf request bodies against (pure Rust, no protoc needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "src/protobuf/proto";
    println!("cargo:rerun-if-changed={root}");
    let mut files = Vec::new();
    collect(&PathBuf::from(root), &mut files)?;
    files.sort();
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(root).map(PathBuf::from))
        .collect::<Result<_, _>>()?;
    let fds = protox::Compiler::new([root])?
        .include_imports(true)
        .open_files(relative)?
        .encode_file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s.binpb");
    std::fs::write(out, fds)?;
    Ok(())
}

fn collect(dir: &PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
