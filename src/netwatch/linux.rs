//! Linux: an rtnetlink socket (rtnetlink(7)) subscribed to address, route and link events.
//!
//! The messages are not decoded. Any message only means "look again": the watcher then takes
//! a [`super::NetworkSnapshot`] and compares, which is both simpler and more robust than
//! tracking state from deltas (a lost message, `ENOBUFS`, cannot leave us with a wrong picture).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The multicast groups we listen to: addresses and routes of both families, and links (a
/// carrier coming or going). Neighbour and rule events are left out; they do not move us
/// between networks by themselves.
const GROUPS: libc::c_int = libc::RTMGRP_LINK
    | libc::RTMGRP_IPV4_IFADDR
    | libc::RTMGRP_IPV6_IFADDR
    | libc::RTMGRP_IPV4_ROUTE
    | libc::RTMGRP_IPV6_ROUTE;

/// Room for one datagram. Event messages are a few hundred bytes; a longer one is truncated,
/// which is harmless because we only count messages.
const RECV_BUFFER: usize = 16 * 1024;

/// Most datagrams read in one go before returning to the debounce loop.
const MAX_DRAIN: usize = 256;

/// A non-blocking rtnetlink socket registered with tokio's reactor.
#[derive(Debug)]
pub(super) struct NetlinkEvents {
    /// The bound socket; readable whenever the kernel has queued an event.
    fd: AsyncFd<OwnedFd>,
    /// Receive buffer, reused for every datagram.
    buffer: Vec<u8>,
}

impl NetlinkEvents {
    /// Opens and binds the socket. Must run inside a tokio runtime (the fd joins its reactor).
    pub(super) fn open() -> io::Result<NetlinkEvents> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        // Port id 0: the kernel assigns one. The group bits are the subscription.
        let groups = u32::try_from(GROUPS).expect("RTMGRP_* constants are small positive bits");
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        // tokio 1.54 deprecates the safe constructors in favour of `unsafe fn register`,
        // because an arbitrary `AsRawFd` type could hand out a different or closed fd later.
        // An `OwnedFd` cannot: it owns one open fd for its whole life, which is exactly the
        // contract `register_with_interest` states. So the safe wrapper is sound here and the
        // crate stays free of `unsafe` (Cargo.toml denies it outside the GSSAPI module).
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        Ok(NetlinkEvents {
            fd,
            buffer: vec![0; RECV_BUFFER],
        })
    }

    /// Waits for at least one event and drains every one already queued, so a burst wakes us
    /// once per read rather than once per message.
    pub(super) async fn next(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buffer = &mut self.buffer;
            match guard.try_io(|fd| drain(fd.get_ref(), buffer)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                // Spurious wake-up: readiness was cleared, wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Reads datagrams until the queue is empty. `Ok` when at least one was there (or the queue
/// overflowed: `ENOBUFS` means the kernel dropped events, which is itself news that something
/// changed); `WouldBlock` when there was nothing, so that tokio clears the readiness.
/// Stops after [`MAX_DRAIN`] datagrams so a flood cannot keep the task from yielding.
fn drain(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<()> {
    let mut seen = false;
    for _ in 0..MAX_DRAIN {
        match recv(fd.as_raw_fd(), buffer, MsgFlags::MSG_DONTWAIT) {
            Ok(_) | Err(Errno::ENOBUFS) => seen = true,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if seen => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
