//! A WebSocket echo upstream for tests (tungstenite), keeping each handshake's request headers.
// The echo's threads share state with Mutex; the lint guards the gateway's request path.
#![allow(clippy::disallowed_types)]
// tungstenite's handshake callback type returns its (large) error response by value.
#![allow(clippy::result_large_err)]

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use tungstenite::handshake::server::{Request, Response as WsResponse};
use tungstenite::Message;

/// One request's header fields (lower-cased names).
pub type Fields = Vec<(String, String)>;

/// A WebSocket echo upstream; keeps each handshake's request headers.
pub struct Echo {
    pub addr: SocketAddr,
    pub handshakes: Arc<Mutex<Vec<Fields>>>,
    /// Set when a connection's read ended (close frame, EOF or reset).
    pub ended: Arc<Mutex<usize>>,
}

impl Echo {
    pub fn start() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(0));
        let (hs, en) = (handshakes.clone(), ended.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let (hs, en) = (hs.clone(), en.clone());
                std::thread::spawn(move || {
                    let cb = |req: &Request, resp: WsResponse| {
                        let h = req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        hs.lock().unwrap().push(h);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tungstenite::accept_hdr(s, cb) else {
                        return;
                    };
                    loop {
                        match ws.read() {
                            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                                if ws.send(m).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {
                                // pongs to pings and the close reply go out on flush
                                if ws.flush().is_err() {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    *en.lock().unwrap() += 1;
                });
            }
        });
        Echo {
            addr,
            handshakes,
            ended,
        }
    }

    pub fn last_handshake(&self) -> Fields {
        self.handshakes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no handshake reached the upstream")
    }
}
