//! The kernel's own test modules (`host/kernel/tests/all/`, which
//! aos-kernel runs on an in-process fake), here on the real driver runtime:
//! the same tests pass whichever `SyscallSource` the kernel is given.

#[path = "../../host/kernel/tests/all/budget.rs"]
mod budget;
#[path = "../../host/kernel/tests/all/caps_prop.rs"]
mod caps_prop;
#[path = "../../host/kernel/tests/all/compat.rs"]
mod compat;
#[path = "../../host/kernel/tests/all/isolation.rs"]
mod isolation;
#[path = "../../host/kernel/tests/all/kernel.rs"]
mod kernel;
#[path = "../../host/kernel/tests/all/restore.rs"]
mod restore;
#[path = "../../host/kernel/tests/all/webhook.rs"]
mod webhook;
