//! Host bindings of the `aos:kernel/full` world (every host interface a
//! driver may import, and the `driver` export), generated from `wit/`.
//! Which of these interfaces a given component actually gets is decided per
//! agent by the host interfaces (`interfaces/`), which build its linker.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "aos:kernel/full",
    imports: { default: async },
    exports: { default: async },
});

pub use aos::kernel::types::SyscallError as WitSyscallError;

impl From<WitSyscallError> for aos_abi::SyscallError {
    fn from(e: WitSyscallError) -> Self {
        use aos_abi::SyscallError as E;
        match e {
            WitSyscallError::InvalidArguments(m) => E::InvalidArguments(m),
            WitSyscallError::Denied(m) => E::Denied(m),
            WitSyscallError::NotFound(m) => E::NotFound(m),
            WitSyscallError::Io(m) => E::Io(m),
            WitSyscallError::Timeout(m) => E::Timeout(m),
            WitSyscallError::LimitExceeded(m) => E::LimitExceeded(m),
            WitSyscallError::Internal(m) => E::Internal(m),
        }
    }
}

impl From<aos_abi::SyscallError> for WitSyscallError {
    fn from(e: aos_abi::SyscallError) -> Self {
        use aos_abi::SyscallError as E;
        match e {
            E::InvalidArguments(m) => WitSyscallError::InvalidArguments(m),
            E::Denied(m) => WitSyscallError::Denied(m),
            E::NotFound(m) => WitSyscallError::NotFound(m),
            E::Io(m) => WitSyscallError::Io(m),
            E::Timeout(m) => WitSyscallError::Timeout(m),
            E::LimitExceeded(m) => WitSyscallError::LimitExceeded(m),
            E::Internal(m) => WitSyscallError::Internal(m),
        }
    }
}
