//! The real binary as a child process, for what only a process shows: signals, exit, its log.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::helpers::JWT_SECRET;

/// A running `location-sharing` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl ServerProcess {
    /// Starts the binary with nothing of the test's environment: a free port, a fresh SQLite
    /// file, the test secret, these variables on top (any of those but `PORT` may be replaced),
    /// and its log (stdout and stderr) in a file; waits until it listens.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_location-sharing"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("db.sqlite3").display()))
            .env("JWT_SECRET", JWT_SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            // No stray .env file is read from the working directory.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log);
        let child = command.spawn().expect("start the location-sharing binary");
        let mut server = Self { child, port, dir };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the server did not listen within 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM failed");
    }

    /// Waits up to `within` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let path: PathBuf = self.dir.path().join("server.log");
        let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
