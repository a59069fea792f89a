//! The tokio + tokio-tungstenite WebSocket baseline of ws_broadcast and at_floor: `/ws`
//! broadcast and `/echo` on one `current_thread` runtime, as a good tokio user writes them.
//! Run as a child process of the bench (it prints `listening http ADDR` and serves until
//! killed), so it is started and measured exactly like the readyloop binary.

use super::ws_client::PREFIX;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The baseline: what one writes with tokio + tokio-tungstenite. `/ws` fans out through a
/// `tokio::sync::broadcast` channel (one formatted message, cloned cheaply per receiver); each
/// connection's writer task feeds what is queued and flushes once per batch. One thread.
// The handshake callback's error type is tungstenite's (a whole HTTP response).
#[allow(clippy::result_large_err)]
pub fn run_tokio_ws_server() {
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("listening http {}", listener.local_addr().unwrap());
            std::io::Write::flush(&mut std::io::stdout()).unwrap();
            let (hub, _) = tokio::sync::broadcast::channel::<Message>(4096);
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let hub = hub.clone();
                tokio::spawn(async move {
                    let path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
                    let seen = path.clone();
                    let callback =
                        move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              resp| {
                            *seen.lock().unwrap() = req.uri().path().to_string();
                            Ok(resp)
                        };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let is_ws = *path.lock().unwrap() == "/ws";
                    if is_ws {
                        let mut inbox = hub.subscribe();
                        tokio::spawn(async move {
                            use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                            loop {
                                match inbox.recv().await {
                                    Ok(m) => {
                                        if sink.feed(m).await.is_err() {
                                            return;
                                        }
                                    }
                                    Err(RecvError::Lagged(_)) => continue,
                                    Err(RecvError::Closed) => return,
                                }
                                loop {
                                    match inbox.try_recv() {
                                        Ok(m) => {
                                            if sink.feed(m).await.is_err() {
                                                return;
                                            }
                                        }
                                        Err(TryRecvError::Lagged(_)) => continue,
                                        Err(_) => break,
                                    }
                                }
                                if sink.flush().await.is_err() {
                                    return;
                                }
                            }
                        });
                        while let Some(Ok(msg)) = stream.next().await {
                            if let Message::Text(t) = msg {
                                let _ = hub.send(Message::text(format!("{PREFIX}{t}")));
                            }
                        }
                    } else {
                        while let Some(Ok(msg)) = stream.next().await {
                            if (msg.is_text() || msg.is_binary()) && sink.send(msg).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    }
}
