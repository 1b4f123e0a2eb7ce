//! `aos:kernel/container` (capability `exec`; `exec:net` adds network
//! through the egress proxy, `aos_egress::proxy`): commands run in the calling process's sandbox
//! container through the configured [`ContainerBackend`](crate::ContainerBackend)
//! (Docker: `aos-sandbox`). The workspace is mounted read-write only with
//! `fs:rw`. Without a backend the interface is still linked for `exec`
//! agents and every call explains how to set one up — never a fallback to
//! the host shell. Time spent waiting for the command is added back to the
//! guest's deadline (the command has its own timeout).

use wasmtime::component::{HasSelf, Linker};

use aos_abi::{Capability, CapabilitySet, SyscallError};

use super::{HostInterface, Prepare};
use crate::bindings::aos::kernel::container;
use crate::bindings::WitSyscallError;
use aos_sandbox::{no_backend, ContainerAgent, Egress};
use crate::state::DriverState;

pub(crate) struct Exec;

impl HostInterface for Exec {
    fn wit_names(&self) -> &'static [&'static str] {
        &["aos:kernel/container"]
    }
    fn enabled_by(&self, caps: &CapabilitySet) -> bool {
        caps.grants(&Capability::Exec)
    }
    fn weakest(&self) -> Capability {
        Capability::Exec
    }
    fn add_to_linker(&self, l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
        container::add_to_linker::<DriverState, HasSelf<DriverState>>(l, |s| s)
    }
    fn prepare(&self, cx: &mut Prepare<'_>) -> Result<(), SyscallError> {
        cx.workspace_owner();
        let a = cx.agent;
        cx.hosts.container = cx.shared.container.clone();
        cx.hosts.container_agent = Some(ContainerAgent {
            pid: a.pid,
            workspace: a.workspace.clone(),
            workspace_writable: a.caps.grants(&Capability::FsWrite),
            // `exec:net`: through the egress proxy, under the agent's `net`
            // grants and the same policy as `NET_FETCH`.
            egress: a.caps.grants(&Capability::ExecNet).then(|| Egress::new(a.caps.clone(), cx.shared.net_policy.clone())),
        });
        Ok(())
    }
}

impl container::Host for DriverState {
    async fn exec(&mut self, req: container::ExecRequest) -> Result<container::ExecOutput, WitSyscallError> {
        let Some(backend) = self.hosts.container.clone() else {
            return Err(no_backend().into());
        };
        let Some(agent) = self.hosts.container_agent.clone() else {
            return Err(WitSyscallError::Denied("capability `exec` not granted".into()));
        };
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let timeout = std::time::Duration::from_millis(u64::from(req.timeout_ms.max(1)));
        let out = backend.exec(&agent, &req.cmd, timeout).await;
        self.deadline += started.elapsed();
        let out = out.map_err(WitSyscallError::from)?;
        Ok(container::ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
            timed_out: out.timed_out,
        })
    }
}
