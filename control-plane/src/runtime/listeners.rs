//! Binding the server's listeners, with errors that name the address and the flag that chose it.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::error::ServeError;

/// Binds a listener; `flag` names the option that chose the address, for the error message. Returns
/// the bound address (the real port when 0 was asked for).
pub async fn bind(
    addr: SocketAddr,
    flag: &'static str,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            return Err(ServeError::AddrInUse { addr, flag });
        }
        Err(source) => return Err(ServeError::Bind { addr, flag, source }),
    };
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, flag, source })?;
    Ok((listener, bound))
}
