//! Compiles the link protocol with a pure-Rust protobuf compiler (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/bosun/link/v1/link.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
