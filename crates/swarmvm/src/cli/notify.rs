//! systemd's readiness protocol (`sd_notify(3)`): a datagram to the socket `NOTIFY_SOCKET`
//! names, when the service manager set one (`Type=notify`). Nothing happens without it.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (like `READY=1`) to the service manager, if one listens. A failure is logged,
/// never fatal: the node runs the same without a manager.
pub(crate) fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = socket.as_encoded_bytes();
    // `@name` is a socket in the abstract namespace; anything else is a path.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&socket),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!(socket = %socket.to_string_lossy(), "cannot notify the service manager: {e}");
    }
}
