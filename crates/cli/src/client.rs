//! A small blocking HTTP client for the commands that talk to a running server (`--url`,
//! `--key`). Error answers (`{"error": {"code", "message", "details"}}`) become readable errors.

use anyhow::{anyhow, bail};
use serde_json::Value;
use std::time::Duration;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "AGENTRAIL_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// The API key (root key for tenant and key administration).
    #[arg(long, env = "AGENTRAIL_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// A server answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("the server's answer is not JSON ({e})"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error message of an error answer, with its details.
    pub fn error(&self) -> anyhow::Error {
        match self.json() {
            Ok(v) if v.get("error").is_some() => {
                let e = &v["error"];
                let mut msg = format!(
                    "{} {}: {}",
                    self.status,
                    e["code"].as_str().unwrap_or("error"),
                    e["message"].as_str().unwrap_or("")
                );
                if let Some(details) = e["details"].as_array() {
                    for d in details.iter().take(50) {
                        msg.push_str(&format!("\n  {d}"));
                    }
                    if details.len() > 50 {
                        msg.push_str(&format!("\n  … and {} more", details.len() - 50));
                    }
                }
                anyhow!(msg)
            }
            _ => anyhow!("{}: {}", self.status, self.text()),
        }
    }
}

/// A client for one server and key.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(r: &Remote) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Client {
            base: r.url.trim_end_matches('/').to_owned(),
            key: r.key.clone(),
            agent,
        }
    }

    pub fn with_key(&self, key: &str) -> Client {
        Client {
            key: Some(key.to_owned()),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Answer> {
        let mut resp = r.map_err(|e| anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| anyhow!("reading the server's answer: {e}"))?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    fn auth(&self) -> anyhow::Result<String> {
        match &self.key {
            Some(k) => Ok(format!("Bearer {k}")),
            None => bail!("no API key: pass --key or set AGENTRAIL_KEY"),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let r = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth()?)
            .call();
        self.finish(r)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let r = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.auth()?)
            .call();
        self.finish(r)
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Answer> {
        let r = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.auth()?)
            .header("Content-Type", content_type)
            .send(body);
        self.finish(r)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// GET that must succeed, as JSON.
    pub fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let a = self.get(path)?;
        if !a.ok() {
            return Err(a.error());
        }
        a.json()
    }

    /// Posts a batch, waiting out 429/503 answers (as `Retry-After` says) up to `tries` times.
    pub fn post_retrying(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        tries: usize,
    ) -> anyhow::Result<Answer> {
        let mut attempt = 0;
        loop {
            let a = self.post(path, content_type, body)?;
            attempt += 1;
            if (a.status == 429 || a.status == 503) && attempt < tries {
                std::thread::sleep(Duration::from_secs(a.retry_after.unwrap_or(1).min(30)));
                continue;
            }
            return Ok(a);
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
