//! Runs the embedded cluster until Ctrl-C: `cargo run -p bosun-cluster --example serve [DATA_DIR]`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    bosun_cluster::serve_until_ctrl_c(bosun_cluster::Config {
        data_dir,
        ..Default::default()
    })
    .await?;
    Ok(())
}
