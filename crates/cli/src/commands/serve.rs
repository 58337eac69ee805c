//! `agentrail serve`: the HTTP API on the embedded default (a data directory, no external
//! service). Prints the root key on the first start.

use agentrail_server::ServerConfig;
use anyhow::anyhow;
use std::path::PathBuf;
use std::process::ExitCode;

pub struct ServeArgs {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub trust_dir: Option<PathBuf>,
    pub signer: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub log_json: bool,
    pub index: Option<String>,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let mut cfg = match &a.config {
        Some(p) => ServerConfig::from_toml_file(p).map_err(|e| anyhow!(e))?,
        None => ServerConfig::default(),
    };
    if let Some(d) = a.data_dir {
        cfg.service.data_dir = d;
    }
    if let Some(t) = a.trust_dir {
        cfg.service.trust_dir = Some(t);
    }
    if let Some(s) = a.signer {
        cfg.service.signer = Some(s);
    }
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(url) = cfg.service.archive.clone()
        && url.starts_with("s3://")
    {
        cfg.service.archive_store = Some(super::archive::open_store(
            &url,
            cfg.service.archive_endpoint.clone(),
            cfg.service.archive_region.clone(),
        )?);
    }
    if let Some(url) = a.index {
        cfg.service.index = Some(url);
    }
    if let Some(url) = cfg.service.index.clone() {
        cfg.service.index_store = Some(super::reindex::open_index(
            Some(&url),
            &cfg.service.data_dir,
        )?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::alloc::worker_parked)
        .build()?;
    rt.spawn(crate::alloc::tick());
    rt.block_on(agentrail_server::serve(cfg, |addr, opened| {
        let url = format!("http://{addr}");
        println!("agentrail listening on {url}");
        match &opened.new_root_key {
            Some(key) => {
                println!(
                    "root key (shown once; also saved 0600 in {}):",
                    opened.root_key_file.display()
                );
                println!("  {key}");
                println!("try:  export AGENTRAIL_URL={url} AGENTRAIL_KEY={key}");
            }
            None => println!(
                "root key: in {} (created on the first start)",
                opened.root_key_file.display()
            ),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        agentrail_kafka::start_all(&opened.service)
    }))
    .map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}
