//! A file server on 127.0.0.1 for tests of kernels fetched by URL, with the
//! faults a real network has. Shared by the test crates (`#[path]`).
//!
//! Paths: `/files/NAME` serves `NAME` from the directory; `/cut/NAME` sends
//! half of it and hangs up; `/stall/NAME` sends the headers and then
//! nothing; anything else is a 404. Every request is counted.
#![allow(dead_code)] // each test crate uses its own part

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Server {
    pub base: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    /// Serves the files in `dir`.
    pub fn start(dir: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                counted.fetch_add(1, Ordering::Relaxed);
                let dir = dir.clone();
                std::thread::spawn(move || serve(stream, &dir));
            }
        });
        Server {
            base,
            requests,
            stop,
        }
    }

    /// How many requests arrived so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread so that it sees the stop.
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}

fn serve(mut stream: TcpStream, dir: &std::path::Path) {
    let mut request = String::new();
    if BufReader::new(&stream).read_line(&mut request).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (mode, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let Ok(body) = std::fs::read(dir.join(name)) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    match mode {
        "files" => {
            let _ = stream.write_all(&body);
        }
        "cut" => {
            let _ = stream.write_all(&body[..body.len() / 2]);
        }
        "stall" => std::thread::sleep(Duration::from_secs(120)),
        _ => {}
    }
}
