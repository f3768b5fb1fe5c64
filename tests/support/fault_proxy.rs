//! A TCP proxy on loopback that passes connections to a real server, except a seeded share of
//! them: those it refuses (closes at once, as a database at its connection limit or a network
//! blip does), or answers with an HTTP error of its own (S3's `503 Slow Down`) once the
//! client has sent its request line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to the connections it picks.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Close the connection before a byte passes.
    Refuse,
    /// Read the request's first bytes, answer `503 Slow Down`, close.
    Http503,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub faulted: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies to `upstream`; `pick` says, per connection, whether to fault it.
    pub async fn start(
        upstream: SocketAddr,
        fault: Fault,
        pick: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let faulted = Arc::new(AtomicU64::new(0));
        let count = faulted.clone();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let picked = pick();
                if picked {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let task = tokio::spawn(async move {
                    let _ = serve(client, upstream, picked.then_some(fault)).await;
                });
                let mut c = conns.lock().unwrap();
                c.retain(|t| !t.is_finished());
                c.push(task);
            }
        });
        Self {
            addr,
            faulted,
            accept,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Option<Fault>,
) -> std::io::Result<()> {
    match fault {
        Some(Fault::Refuse) => return client.shutdown().await,
        Some(Fault::Http503) => {
            let mut head = [0u8; 512];
            let _ = client.read(&mut head).await?;
            let body = "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            return client.shutdown().await;
        }
        None => {}
    }
    let mut server = TcpStream::connect(upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
