//! `aos sandbox …`: the Docker sandbox EXEC_CMD runs commands in.
//! `build` makes the image locally (the logic of
//! `scripts/build-sandbox-image.sh`, embedded in the binary); `status` says
//! whether the engine answers and the image exists.

use anyhow::{Context, Result};
use clap::Subcommand;

use aos_sandbox::docker::DEFAULT_IMAGE;
use aos_sandbox::{DockerBackend, DockerConfig};

/// The image build script, embedded so `aos sandbox build` works from any directory.
const BUILD_SCRIPT: &str = include_str!("../../../../scripts/build-sandbox-image.sh");

#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Build the sandbox image locally: a minimal Debian bookworm (debootstrap) with
    /// bash, coreutils, git, python3, nodejs, curl, jq…, imported with `docker import`.
    /// Skipped if the image exists and is current (its aos.sandbox.recipe label), unless --force;
    /// an image built by an older version is rebuilt. Needs root (or sudo) and a running Docker.
    #[command(after_help = "If Docker is not running, start it first (as root): scripts/setup-docker.sh --no-image")]
    Build {
        /// Rebuild even if the image exists.
        #[arg(long)]
        force: bool,
        /// Image name.
        #[arg(long, default_value = DEFAULT_IMAGE)]
        image: String,
    },
    /// Report whether the Docker engine answers and whether the sandbox image exists.
    Status {
        /// Image name.
        #[arg(long, default_value = DEFAULT_IMAGE)]
        image: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: SandboxCmd) -> Result<i32> {
    match cmd {
        SandboxCmd::Build { force, image } => {
            let mut c = tokio::process::Command::new("bash");
            c.arg("-c").arg(BUILD_SCRIPT).arg("build-sandbox-image.sh");
            if force {
                c.arg("--force");
            }
            c.arg(&image);
            let status = c.status().await.context("cannot run bash to build the sandbox image")?;
            Ok(status.code().unwrap_or(1))
        }
        SandboxCmd::Status { image, json } => {
            let backend = DockerBackend::connect(DockerConfig { image, ..Default::default() })?;
            let st = backend.status().await;
            if json {
                outln!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                match &st.server_version {
                    Some(v) => outln!("docker:  reachable at {} (engine {v})", st.endpoint),
                    None => outln!(
                        "docker:  NOT reachable at {}\n         {}",
                        st.endpoint,
                        st.error.as_deref().unwrap_or("")
                    ),
                }
                if st.server_version.is_some() {
                    if st.image_present {
                        match backend.check_image().await {
                            Ok(()) => outln!("image:   {} present", st.image),
                            Err(e) => outln!("image:   {} OUTDATED — {e}", st.image),
                        }
                    } else {
                        outln!("image:   {} MISSING — build it with `aos sandbox build`", st.image);
                    }
                    outln!("sandboxes running: {}", st.containers);
                } else {
                    outln!("image:   unknown (start Docker first: as root, scripts/setup-docker.sh)");
                }
            }
            Ok(if st.server_version.is_some() && st.image_present { 0 } else { 1 })
        }
    }
}
