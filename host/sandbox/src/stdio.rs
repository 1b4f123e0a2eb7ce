//! Stdio containers: one long-running program in the sandbox image whose
//! stdin and stdout are its interface (a stdio MCP server), attached through
//! the engine's API ([`DockerBackend::spawn_stdio`]).
//!
//! The container gets the same lock-down as an `EXEC_CMD` sandbox
//! ([`DockerBackend`]'s module docs): network mode `none` (unless the spec
//! asks for the default bridge network), memory/pids/CPU limits,
//! `cap-drop ALL`, `no-new-privileges`, a read-only root filesystem with a
//! tmpfs `/tmp` (also `$HOME`), an init process, a non-root user (the
//! configured `user`, else uid/gid 1000), and no view of the host's files
//! but the bind mounts the spec names. Its environment is what the spec
//! names plus `HOME=/tmp` and `LANG=C.UTF-8` (the image supplies `PATH`).
//!
//! It is created with `tty: false` and an open stdin, attached before it is
//! started (so no output is lost), and its multiplexed output is split: stdout
//! bytes to [`StdioContainer::stdout`], stderr bytes to
//! [`StdioContainer::stderr`] (the caller must keep reading both). Both end
//! when the program exits or the container is killed. The container is
//! removed when its program exits (`auto_remove`), when its
//! [`ContainerGuard`] is dropped or removed, when the backend shuts down
//! (it carries the backend's instance label), and, if the kernel crashed, by
//! the next backend of the same kernel home (`aos.kernel`/`aos.owner`
//! labels). Its stdin is closed when the attaching connection goes
//! (`stdin_once`), so a server whose kernel died sees end-of-file and exits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use bollard::models::{ContainerCreateBody, Mount, MountType};
use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};

use aos_abi::SyscallError;

use crate::docker::{DockerBackend, SANDBOX_USER};

/// Label naming the MCP server a stdio container runs.
pub const LABEL_MCP: &str = "aos.mcp";

/// Bytes buffered between the engine's output stream and the readers.
const PIPE_BYTES: usize = 64 << 10;

/// One host directory (or file) visible in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path on the host.
    pub host: PathBuf,
    /// Absolute path in the container.
    pub container: PathBuf,
    /// Mounted read-write (else read-only).
    pub writable: bool,
}

/// What to run in a stdio container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StdioSpec {
    /// What the container runs for (e.g. the MCP server's name): its
    /// `aos.mcp` label and part of its name.
    pub label: String,
    /// The program (found on the image's `PATH`) and its arguments.
    pub argv: Vec<String>,
    /// Its environment, besides `HOME=/tmp` and `LANG=C.UTF-8`.
    pub env: BTreeMap<String, String>,
    /// Working directory in the container (default `/tmp`).
    pub workdir: Option<PathBuf>,
    /// The only host paths it sees.
    pub mounts: Vec<BindMount>,
    /// Attach it to Docker's default bridge network (else network mode `none`).
    pub network: bool,
}

/// A running stdio container.
pub struct StdioContainer {
    /// The program's stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// The program's stdout; ends when it exits.
    pub stdout: DuplexStream,
    /// The program's stderr; ends when it exits.
    pub stderr: DuplexStream,
    /// Removes the container when dropped.
    pub guard: ContainerGuard,
}

/// Owns a container: removes it (forcibly) when dropped or [`ContainerGuard::remove`]d.
pub struct ContainerGuard {
    docker: Option<Docker>,
    id: String,
}

impl ContainerGuard {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the container now, waiting for the engine's answer.
    pub async fn remove(mut self) {
        if let Some(d) = self.docker.take() {
            remove_quietly(&d, &self.id).await;
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(d) = self.docker.take() {
            let id = std::mem::take(&mut self.id);
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move { remove_quietly(&d, &id).await });
                }
                Err(_) => tracing::warn!(target: "aos::exec", container = %id, "no runtime to remove a stdio container; the next kernel of this home removes it"),
            }
        }
    }
}

/// Force-removes `id`; a container already gone (or being removed) is fine.
async fn remove_quietly(d: &Docker, id: &str) {
    let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    match d.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
        Err(e) => tracing::warn!(target: "aos::exec", container = %id, "cannot remove a stdio container: {e}"),
    }
}

impl DockerBackend {
    /// Runs `spec` in a new locked-down container of the sandbox image, with
    /// its stdin and stdout attached (see the module docs). Fails with what
    /// to do when the engine is not reachable, the image is missing or
    /// outdated, or the program cannot be started.
    pub async fn spawn_stdio(&self, spec: &StdioSpec) -> Result<StdioContainer, SyscallError> {
        let d = self.ready_client().await?;
        self.check_image().await?;
        let mut labels = self.labels();
        labels.insert(LABEL_MCP.to_string(), spec.label.clone());
        let mut host_config = self.locked_down();
        if spec.network {
            host_config.network_mode = Some("bridge".to_string());
        }
        host_config.auto_remove = Some(true);
        host_config.mounts = Some(
            spec.mounts
                .iter()
                .map(|m| Mount {
                    source: Some(m.host.display().to_string()),
                    target: Some(m.container.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(!m.writable),
                    ..Default::default()
                })
                .collect(),
        );
        let mut env: BTreeMap<String, String> =
            [("HOME".to_string(), "/tmp".to_string()), ("LANG".to_string(), "C.UTF-8".to_string())].into();
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let user = self.config().user.clone().unwrap_or_else(|| format!("{}:{}", SANDBOX_USER.0, SANDBOX_USER.1));
        let body = ContainerCreateBody {
            image: Some(self.config().image.clone()),
            cmd: Some(spec.argv.clone()),
            entrypoint: Some(vec![]),
            user: Some(user),
            working_dir: Some(spec.workdir.as_ref().map(|w| w.display().to_string()).unwrap_or_else(|| "/tmp".into())),
            env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            tty: Some(false),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let label: String =
            spec.label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let name = format!("aos-mcp-{}-{}-{label}-{}", self.config().kernel_label, self.instance(), self.next_serial());
        let opts = CreateContainerOptions { name: Some(name), ..Default::default() };
        let created = d.create_container(Some(opts), body).await.map_err(|e| self.stdio_err("create the container", e))?;
        let guard = ContainerGuard { docker: Some(d.clone()), id: created.id.clone() };
        let attach = AttachContainerOptions { stream: true, stdin: true, stdout: true, stderr: true, logs: false, detach_keys: None };
        let attached = d.attach_container(&created.id, Some(attach)).await.map_err(|e| self.stdio_err("attach to the container", e))?;
        d.start_container(&created.id, None).await.map_err(|e| self.stdio_err("start the container", e))?;
        tracing::debug!(target: "aos::exec", container = %created.id, label = %spec.label, "stdio container started");

        let (mut out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
        let (mut err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
        let mut output = attached.output;
        tokio::spawn(async move {
            use bollard::container::LogOutput as L;
            while let Some(frame) = output.next().await {
                let ok = match frame {
                    Ok(L::StdOut { message } | L::Console { message }) => out_w.write_all(&message).await.is_ok(),
                    // A reader that went away loses stderr, never stdout.
                    Ok(L::StdErr { message }) => {
                        let _ = err_w.write_all(&message).await;
                        true
                    }
                    Ok(L::StdIn { .. }) => true,
                    Err(e) => {
                        tracing::debug!(target: "aos::exec", "stdio container output ended: {e}");
                        false
                    }
                };
                if !ok {
                    break;
                }
            }
            // Dropping the writers ends both readers.
        });
        Ok(StdioContainer { stdin: attached.input, stdout: out_r, stderr: err_r, guard })
    }

    fn stdio_err(&self, what: &str, e: bollard::errors::Error) -> SyscallError {
        match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, message } if message.to_lowercase().contains("image") => {
                self.image_missing()
            }
            bollard::errors::Error::DockerResponseServerError { message, .. } => {
                SyscallError::Internal(format!("Docker could not {what}: {message}"))
            }
            e => self.api_err(&format!("{what} (stdio container)"), e),
        }
    }
}
