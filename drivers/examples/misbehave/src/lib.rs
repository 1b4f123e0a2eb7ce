//! A deliberately badly behaved driver used by the runtime's isolation
//! tests: it loops forever, allocates without bound, traps and panics on
//! request, and echoes otherwise (to show the next call still works).
//! It is never built into the kernel.

use aos_guest_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
pub struct Empty {}

#[derive(Deserialize, JsonSchema)]
pub struct AllocArgs {
    /// MiB to allocate and touch.
    pub mib: u32,
}

#[derive(Deserialize, JsonSchema)]
pub struct PathArgs {
    pub path: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct EchoArgs {
    pub text: String,
}

pub struct Misbehave;

impl Driver for Misbehave {
    fn router() -> Router {
        Router::new()
            .syscall("BAD_LOOP", "Loop forever.", |_: Empty| -> SyscallResult<Value> {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .syscall("BAD_ALLOC", "Allocate and touch `mib` MiB.", |a: AllocArgs| {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                for _ in 0..a.mib {
                    keep.push(vec![1u8; 1024 * 1024]);
                }
                Ok(json!({ "allocated_mib": keep.len() }))
            })
            .syscall("BAD_TRAP", "Execute an unreachable instruction.", |_: Empty| -> SyscallResult<Value> {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                std::process::abort();
            })
            .syscall("BAD_PANIC", "Panic.", |_: Empty| -> SyscallResult<Value> {
                panic!("misbehave driver panicked on purpose")
            })
            // Writes without declaring `fs:rw`: only the read-only preopen stops it.
            .syscall("BAD_WRITE", "Write `path` without declaring fs:rw.", |a: PathArgs| {
                std::fs::write(&a.path, b"pwned").map_err(|e| SyscallError::from_io(&e, &a.path))?;
                Ok(json!({ "wrote": a.path }))
            })
            // Reads any path it is given, with no checks of its own.
            .syscall("BAD_READ", "Read `path` with no checks.", |a: PathArgs| {
                let s = std::fs::read_to_string(&a.path).map_err(|e| SyscallError::from_io(&e, &a.path))?;
                Ok(json!({ "content": s }))
            })
            .syscall("BAD_ECHO", "Echo `text`.", |a: EchoArgs| Ok(json!({ "echo": a.text })))
    }
}

aos_guest_sdk::export_driver!(Misbehave);
