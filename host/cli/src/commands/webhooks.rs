//! `aos webhooks`: the paths processes registered with
//! `SYS_REGISTER_WEBHOOK`: path, owning pid, URL, and (with
//! `--show-secret`) the secret callers must send.

use anyhow::Result;
use clap::Args;

use aos_daemon::api::WebhookInfo;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  aos webhooks\n  aos webhooks --show-secret\n  \
    curl -H \"X-AOS-Secret: $SECRET\" -d '{\"ref\":\"main\"}' http://127.0.0.1:PORT/github/push")]
pub struct WebhooksArgs {
    /// Also print each path's secret (the header X-AOS-Secret callers send).
    #[arg(long)]
    pub show_secret: bool,
    /// Print a JSON array of `{"path", "pid", "url", "secret"?}`.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: WebhooksArgs) -> Result<i32> {
    let client = super::kernel::connect()?.1;
    let path = if a.show_secret { "/v1/webhooks?secrets=1" } else { "/v1/webhooks" };
    let hooks: Vec<WebhookInfo> = client.get(path).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&hooks)?);
        return Ok(0);
    }
    let mut rows = vec![vec!["PATH".to_string(), "PID".into(), "URL".into()]];
    if a.show_secret {
        rows[0].push("SECRET".into());
    }
    for h in &hooks {
        let mut r = vec![h.path.clone(), h.pid.to_string(), h.url.clone().unwrap_or_else(|| "(webhooks.listen = off)".into())];
        if a.show_secret {
            r.push(h.secret.clone().unwrap_or_default());
        }
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}
