//! `agentrail export` (against a server: start an export job, follow its progress, download its
//! files) and `agentrail verify-export DIR --key KEY` (offline: no server, no data directory).

use crate::client::{Client, Remote, enc};
use crate::progress::Progress;
use agentrail_note::Verifier;
use anyhow::{anyhow, bail};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub struct ExportArgs<'a> {
    pub tenant: &'a str,
    pub from: Option<String>,
    pub to: Option<String>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    pub format: &'a str,
    pub destination: Option<String>,
    pub view: Option<String>,
    pub out: &'a Path,
}

pub fn export(r: &Remote, a: ExportArgs<'_>) -> anyhow::Result<ExitCode> {
    let c = Client::new(r);
    let base = format!("/v1/tenants/{}/exports", enc(a.tenant));
    let body = json!({
        "format": a.format, "from": a.from, "to": a.to, "from_seq": a.from_seq,
        "to_seq": a.to_seq, "destination": a.destination, "view": a.view,
    });
    let ans = c.post_json(&base, &body)?;
    if !ans.ok() {
        return Err(ans.error());
    }
    let id = ans.json()?["export_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no export_id in the answer"))?
        .to_owned();
    eprintln!("export {id} started");
    let mut progress: Option<Progress> = None;
    let status = loop {
        let st = c.get_json(&format!("{base}/{}", enc(&id)))?;
        let total = st["events_total"].as_u64().unwrap_or(0);
        let done = st["events_done"].as_u64().unwrap_or(0);
        let p = progress.get_or_insert_with(|| Progress::new(total, "events"));
        p.set(done, total);
        match st["status"].as_str() {
            Some("done") => break st,
            Some("running") => std::thread::sleep(Duration::from_millis(200)),
            Some(other) => bail!(
                "export {id} is {other}: {}",
                st["error"].as_str().unwrap_or("no error recorded")
            ),
            None => bail!("unexpected answer {st}"),
        }
    };
    if let Some(p) = &mut progress {
        p.finish();
    }
    std::fs::create_dir_all(a.out)?;
    let files: Vec<String> = status["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    for name in &files {
        let ans = c.get(&format!("{base}/{}/files/{}", enc(&id), enc(name)))?;
        if !ans.ok() {
            return Err(ans.error());
        }
        // Listed names are paths relative to the manifest (`data/events-….parquet`); refuse any
        // that would land outside the output directory.
        if name != agentrail_export::MANIFEST_FILE && !agentrail_export::valid_file_path(name) {
            bail!("export {id} lists a file {name:?} that is not a path inside the export");
        }
        let path = a.out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = a.out.join(format!("{name}.part"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&ans.body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    let m = &status["manifest"]["manifest"];
    println!(
        "export {id}: {} events (seq {}..{}) in {} files, written to {}",
        m["count"],
        m["first_seq"],
        m["end_seq"],
        files.len(),
        a.out.display()
    );
    println!(
        "verify it offline: agentrail verify-export {} --key \"$(curl -s -H 'Authorization: Bearer <reader>' {}/v1/tenants/{}/verifier-key)\"",
        a.out.display(),
        r.url,
        a.tenant
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify_export(
    dir: &Path,
    key: &str,
    witnesses: &[String],
    min_witnesses: usize,
) -> anyhow::Result<ExitCode> {
    let key: Verifier = key.trim().parse().map_err(|e| anyhow!("--key: {e}"))?;
    let witnesses: Vec<Verifier> = witnesses
        .iter()
        .map(|w| w.trim().parse().map_err(|e| anyhow!("--witness: {e}")))
        .collect::<anyhow::Result<_>>()?;
    let started = std::time::Instant::now();
    let mut bar = Progress::labelled(0, "events", "");
    let result =
        agentrail_export::verify_export_with_progress(dir, &key, &witnesses, &mut |done, total| {
            bar.set(done, total)
        });
    bar.clear();
    match result {
        Ok(r) if r.cosigned_by.len() < min_witnesses => {
            println!(
                "FAILED: the export's checkpoint (size {}) is cosigned by {} of the given witnesses, {min_witnesses} required (export with \"cosigned\": true once witnesses cosigned one)",
                r.checkpoint_size,
                r.cosigned_by.len()
            );
            Ok(ExitCode::FAILURE)
        }
        Ok(r) => {
            for (name, ts) in &r.cosigned_by {
                println!("cosignature by {name} at {ts}: ok");
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "ok: tenant {}, {} events (seq {}..{}) in {} files, every hash and the chain recomputed, leaves of the signed tree of size {} (root {})",
                r.tenant,
                r.events,
                r.first_seq,
                r.end_seq,
                r.files,
                r.checkpoint_size,
                agentrail_event::hash::to_hex(&r.root)
            );
            eprintln!(
                "{:.1} MB in {secs:.2} s ({:.0} MB/s)",
                r.bytes as f64 / 1e6,
                r.bytes as f64 / 1e6 / secs
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
