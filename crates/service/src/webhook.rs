//! Alerts POSTed to the configured webhook (`webhook_url`): an integrity failure, an archive
//! that fell behind. One JSON body `{"event": <kind>, "record": <what happened>}`; a webhook
//! that is down or refuses is logged at error (the alert is also logged by its caller).

use serde_json::{Value, json};
use std::time::Duration;

pub fn alert(url: Option<&str>, event: &str, record: &Value) {
    let Some(url) = url else { return };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let body = json!({"event": event, "record": record}).to_string();
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
    {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::error!(%url, %event, status = r.status().as_u16(), "the webhook refused"),
        Err(e) => tracing::error!(%url, %event, error = %e, "cannot reach the webhook"),
    }
}
