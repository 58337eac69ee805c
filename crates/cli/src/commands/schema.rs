//! `agentrail schema`: the JSON Schema of event v1.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&agentrail_event::event_schema())?
    );
    Ok(ExitCode::SUCCESS)
}
