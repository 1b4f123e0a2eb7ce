//! The `wasi:filesystem` host of driver instances: wasmtime-wasi's
//! implementation, with what makes it safe to run on a scheduler thread
//! against a workspace an agent controls.
//!
//! File work runs inline on the calling thread
//! (`allow_blocking_current_thread`, ~6 µs per small read instead of ~40 µs
//! through the blocking pool), so no host call may wait on anything an agent
//! controls, and none may take long:
//! - **Opens never block.** Every `open-at` is made here, not by
//!   wasmtime-wasi: `O_NONBLOCK | O_NOCTTY` (a FIFO without a writer, a
//!   device, or a file under another process's lease would otherwise block
//!   in `open(2)` itself, where no deadline reaches), then `fstat` on the
//!   descriptor: only regular files and directories are handed to the guest;
//!   a FIFO, socket or device is closed and refused (`unsupported`), with the
//!   reason recorded for the runtime to report. Checking the opened
//!   descriptor, not the path, leaves no window for a swap. Path resolution
//!   stays beneath the preopen (`cap-primitives`: `openat2` with
//!   `RESOLVE_BENEATH` where the kernel has it), exactly as wasmtime-wasi
//!   resolves.
//! - **Nothing long runs inline.** A directory listing (one host call reads
//!   every entry and its metadata: seconds for a million entries) and
//!   `sync`/`sync-data` (waits on the disk) run on tokio's blocking pool, so
//!   the guest's call yields meanwhile and its deadline still applies. What
//!   stays inline is bounded work on bounded data: open, stat, one read or
//!   write of at most the guest's buffer.
//! - **The workspace owner's rights, not root's.** When the kernel runs as
//!   root and the workspace belongs to a user, every operation that opens,
//!   creates, links, renames or removes a path runs with that user's
//!   filesystem ids (`setfsuid`/`setfsgid`, per thread, around that one host
//!   call): files are born owned by the user the sandbox container runs as
//!   (no chown afterwards, no walk), and the kernel cannot write where the
//!   user could not.
//!
//! `stat`/`stat-at` also name FIFOs and sockets (`fifo`, `socket`), which
//! wasmtime-wasi reports as `unknown`, so a driver can say what a path is.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use cap_primitives::fs::{FollowSymlinks, OpenOptions, OpenOptionsExt};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, File, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor, HostDirectoryEntryStream};
use wasmtime_wasi::p2::{FsError, FsResult};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use aos_abi::SyscallError;

use aos_egress::Notes;
use crate::state::DriverState;

/// The [`HasData`] under which the guarded filesystem is linked.
pub(crate) struct GuardedFs;

impl HasData for GuardedFs {
    type Data<'a> = GuardedFsView<'a>;
}

/// What the guarded host functions reach: wasmtime-wasi's view, the
/// workspace owner's ids (when they apply), and the notes the runtime reports.
pub(crate) struct GuardedFsView<'a> {
    inner: WasiFilesystemCtxView<'a>,
    owner: Option<(u32, u32)>,
    notes: &'a Notes,
}

/// The accessor `interfaces/fs.rs` links with.
pub(crate) fn view(s: &mut DriverState) -> GuardedFsView<'_> {
    GuardedFsView {
        inner: WasiFilesystemCtxView { ctx: s.wasi.filesystem(), table: &mut s.table },
        owner: s.hosts.fs_owner.flatten(),
        notes: &s.hosts.net.notes,
    }
}

/// The filesystem ids of the current thread, switched to a user for the
/// guard's lifetime (Linux `setfsuid`/`setfsgid` are per thread).
struct FsIds {
    prev: Option<(u32, u32)>,
}

impl FsIds {
    fn enter(owner: Option<(u32, u32)>) -> FsIds {
        let Some((uid, gid)) = owner else { return FsIds { prev: None } };
        // SAFETY: plain syscalls on the current thread; they return the previous ids.
        let prev_gid = unsafe { libc::setfsgid(gid) } as u32;
        let prev_uid = unsafe { libc::setfsuid(uid) } as u32;
        FsIds { prev: Some((prev_uid, prev_gid)) }
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.prev {
            // SAFETY: as above; restores what `enter` found.
            unsafe {
                libc::setfsuid(uid);
                libc::setfsgid(gid);
            }
        }
    }
}

/// Polls `inner` with the owner's filesystem ids on whatever thread polls
/// it, and the kernel's own ids between polls.
struct AsOwner<F> {
    inner: Pin<Box<F>>,
    owner: Option<(u32, u32)>,
}

impl<F: Future> Future for AsOwner<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _ids = FsIds::enter(self.owner);
        self.inner.as_mut().poll(cx)
    }
}

/// The WASI type of a file wasmtime-wasi calls `unknown`.
fn precise_type(fifo: bool, socket: bool) -> types::DescriptorType {
    if fifo {
        types::DescriptorType::Fifo
    } else if socket {
        types::DescriptorType::Socket
    } else {
        types::DescriptorType::Unknown
    }
}

fn as_owner<F: Future>(owner: Option<(u32, u32)>, fut: F) -> AsOwner<F> {
    AsOwner { inner: Box::pin(fut), owner }
}

/// What kind of non-regular file `ft` is, for messages.
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    kind_name(ft.is_fifo(), ft.is_socket(), ft.is_char_device(), ft.is_block_device())
}

fn kind_name(fifo: bool, socket: bool, char_device: bool, block_device: bool) -> &'static str {
    if fifo {
        "a FIFO (named pipe)"
    } else if socket {
        "a socket"
    } else if char_device {
        "a character device"
    } else if block_device {
        "a block device"
    } else {
        "not a regular file"
    }
}

impl GuardedFsView<'_> {
    fn note(&self, e: SyscallError) {
        tracing::info!(target: "aos::fs", "{e}");
        self.notes.lock().push(e);
    }

    /// The refusal of a special file: noted for the model, `unsupported` for the guest.
    fn refuse_special(&self, path: &str, kind: &str) -> FsError {
        self.note(SyscallError::InvalidArguments(format!(
            "`{path}` is {kind}, not a regular file or directory; drivers may only open regular files and \
             directories (reading a FIFO or device could block forever)"
        )));
        ErrorCode::Unsupported.into()
    }

    /// A twin of a directory descriptor whose file work goes to the blocking pool.
    fn offloaded_dir(&mut self, fd: &Resource<types::Descriptor>) -> FsResult<Resource<types::Descriptor>> {
        let d = match self.inner.table.get(fd)? {
            Descriptor::Dir(d) => d,
            Descriptor::File(_) => return Err(ErrorCode::NotDirectory.into()),
        };
        let twin = Dir::new(d.dir.try_clone()?, d.perms, d.open_mode, false);
        Ok(self.inner.table.push(Descriptor::Dir(twin))?)
    }

    /// A twin of a descriptor whose file work goes to the blocking pool.
    fn offloaded(&mut self, fd: &Resource<types::Descriptor>) -> FsResult<Resource<types::Descriptor>> {
        let twin = match self.inner.table.get(fd)? {
            Descriptor::Dir(d) => Descriptor::Dir(Dir::new(d.dir.try_clone()?, d.perms, d.open_mode, false)),
            Descriptor::File(f) => Descriptor::File(File::new(f.file.try_clone()?, f.perms, f.open_mode, false)),
        };
        Ok(self.inner.table.push(twin)?)
    }

    fn drop_twin(&mut self, twin: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.table.delete(twin)?;
        Ok(())
    }
}

fn borrow(r: &Resource<types::Descriptor>) -> Resource<types::Descriptor> {
    Resource::new_borrow(r.rep())
}

impl preopens::Host for GuardedFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        preopens::Host::get_directories(&mut self.inner)
    }
}

impl types::Host for GuardedFsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(&mut self, err: Resource<wasmtime::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDescriptor for GuardedFsView<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        use types::{DescriptorFlags as F, OpenFlags as O};
        let d = match self.inner.table.get(&fd)? {
            Descriptor::Dir(d) => d.clone(),
            Descriptor::File(_) => return Err(ErrorCode::NotDirectory.into()),
        };
        // The options wasmtime-wasi's `Dir::open_at` computes, plus O_NONBLOCK.
        let mut create = false;
        let mut open_mode = OpenMode::empty();
        let mut opts = OpenOptions::new();
        opts._cap_fs_ext_maybe_dir(true);
        if oflags.contains(O::CREATE) {
            if oflags.contains(O::EXCLUSIVE) {
                opts.create_new(true);
            } else {
                opts.create(true);
            }
            create = true;
            opts.write(true);
            open_mode |= OpenMode::WRITE;
        }
        if oflags.contains(O::TRUNCATE) {
            opts.truncate(true).write(true);
            open_mode |= OpenMode::WRITE;
        }
        if flags.contains(F::READ) {
            opts.read(true);
            open_mode |= OpenMode::READ;
        }
        if flags.contains(F::WRITE) {
            opts.write(true);
            open_mode |= OpenMode::WRITE;
        } else {
            opts.read(true);
            open_mode |= OpenMode::READ;
        }
        opts._cap_fs_ext_follow(if path_flags.contains(types::PathFlags::SYMLINK_FOLLOW) {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        });
        if flags.contains(F::FILE_INTEGRITY_SYNC)
            || flags.contains(F::DATA_INTEGRITY_SYNC)
            || flags.contains(F::REQUESTED_WRITE_SYNC)
        {
            return Err(ErrorCode::Unsupported.into());
        }
        let mut custom = libc::O_NONBLOCK | libc::O_NOCTTY;
        if oflags.contains(O::DIRECTORY) {
            if oflags.contains(O::CREATE) || oflags.contains(O::EXCLUSIVE) || oflags.contains(O::TRUNCATE) {
                return Err(ErrorCode::Invalid.into());
            }
            custom |= libc::O_DIRECTORY;
        }
        opts.custom_flags(custom);
        if d.perms.write_not_permitted() && (create || open_mode.contains(OpenMode::WRITE)) {
            return Err(ErrorCode::NotPermitted.into());
        }

        let opened = {
            let _ids = FsIds::enter(self.owner);
            cap_primitives::fs::open(&d.dir, Path::new(&path), &opts)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                match e.raw_os_error() {
                    // A FIFO opened for writing with no reader, a socket, a
                    // device without its driver: name what it is.
                    Some(libc::ENXIO) => {
                        use cap_primitives::fs::FileTypeExt;
                        let follow = if path_flags.contains(types::PathFlags::SYMLINK_FOLLOW) {
                            FollowSymlinks::Yes
                        } else {
                            FollowSymlinks::No
                        };
                        let kind = cap_primitives::fs::stat(&d.dir, Path::new(&path), follow)
                            .map(|m| {
                                let t = m.file_type();
                                kind_name(t.is_fifo(), t.is_socket(), t.is_char_device(), t.is_block_device())
                            })
                            .unwrap_or("not a regular file");
                        return Err(self.refuse_special(&path, kind));
                    }
                    // Another process holds a lease on the file.
                    Some(libc::EWOULDBLOCK) => self.note(SyscallError::Io(format!(
                        "`{path}` is held by another process (a file lease); try again later"
                    ))),
                    _ => {}
                }
                return Err(e.into());
            }
        };
        let ft = file.metadata()?.file_type();
        let desc = if ft.is_dir() {
            Descriptor::Dir(Dir::new(file, d.perms, open_mode, true))
        } else if oflags.contains(O::DIRECTORY) {
            return Err(ErrorCode::NotDirectory.into());
        } else if ft.is_file() {
            Descriptor::File(File::new(file, d.perms, open_mode, true))
        } else {
            drop(file);
            return Err(self.refuse_special(&path, special_kind(&ft)));
        };
        Ok(self.inner.table.push(desc)?)
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let twin = self.offloaded_dir(&fd)?;
        let r = HostDescriptor::read_directory(&mut self.inner, borrow(&twin)).await;
        self.drop_twin(twin)?;
        r
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let twin = self.offloaded(&fd)?;
        let r = HostDescriptor::sync_data(&mut self.inner, borrow(&twin)).await;
        self.drop_twin(twin)?;
        r
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        let twin = self.offloaded(&fd)?;
        let r = HostDescriptor::sync(&mut self.inner, borrow(&twin)).await;
        self.drop_twin(twin)?;
        r
    }

    async fn create_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::create_directory_at(&mut self.inner, fd, path)).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::link_at(&mut self.inner, fd, old_path_flags, old_path, new_descriptor, new_path))
            .await
    }

    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::remove_directory_at(&mut self.inner, fd, path)).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path)).await
    }

    async fn symlink_at(&mut self, fd: Resource<types::Descriptor>, src_path: String, dest_path: String) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::symlink_at(&mut self.inner, fd, src_path, dest_path)).await
    }

    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::unlink_file_at(&mut self.inner, fd, path)).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        let owner = self.owner;
        as_owner(owner, HostDescriptor::set_times_at(&mut self.inner, fd, path_flags, path, atim, mtim)).await
    }

    // Everything else works on an open descriptor (or only reads metadata)
    // and is wasmtime-wasi's as is.

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.inner, fd, offset, len, advice).await
    }

    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.inner, fd).await
    }

    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorType> {
        HostDescriptor::get_type(&mut self.inner, fd).await
    }

    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: types::Filesize) -> FsResult<()> {
        HostDescriptor::set_size(&mut self.inner, fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.inner, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.inner, fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        HostDescriptor::write(&mut self.inner, fd, buf, offset).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        let mut st = HostDescriptor::stat(&mut self.inner, borrow(&fd)).await?;
        if st.type_ == types::DescriptorType::Unknown {
            let md = match self.inner.table.get(&fd)? {
                Descriptor::File(f) => f.file.metadata(),
                Descriptor::Dir(d) => d.dir.metadata(),
            };
            if let Ok(md) = md {
                use std::os::unix::fs::FileTypeExt;
                let t = md.file_type();
                st.type_ = precise_type(t.is_fifo(), t.is_socket());
            }
        }
        Ok(st)
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        let mut st = HostDescriptor::stat_at(&mut self.inner, borrow(&fd), path_flags, path.clone()).await?;
        // wasmtime-wasi reports FIFOs and sockets as `unknown`; WASI has names for them.
        if st.type_ == types::DescriptorType::Unknown {
            if let Descriptor::Dir(d) = self.inner.table.get(&fd)? {
                use cap_primitives::fs::FileTypeExt;
                let follow = if path_flags.contains(types::PathFlags::SYMLINK_FOLLOW) {
                    FollowSymlinks::Yes
                } else {
                    FollowSymlinks::No
                };
                if let Ok(md) = cap_primitives::fs::stat(&d.dir, Path::new(&path), follow) {
                    let t = md.file_type();
                    st.type_ = precise_type(t.is_fifo(), t.is_socket());
                }
            }
        }
        Ok(st)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<String> {
        HostDescriptor::readlink_at(&mut self.inner, fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        HostDescriptor::write_via_stream(&mut self.inner, fd, offset)
    }

    fn append_via_stream(&mut self, fd: Resource<types::Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        HostDescriptor::append_via_stream(&mut self.inner, fd)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.inner, a, b).await
    }

    async fn metadata_hash(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.inner, fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash_at(&mut self.inner, fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for GuardedFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.inner, stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
