//! The real `wasmsink` binary as a child process, with its log captured.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `wasmsink run --config FILE`; killed when dropped.
pub struct Wasmsink {
    child: Child,
    log: PathBuf,
    api: String,
}

impl Wasmsink {
    /// Writes `config` into `dir` and starts `wasmsink run` on it, logging
    /// JSON lines to `dir/wasmsink-N.log`.
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_with_env(dir, config, &[])
    }

    /// [`start`](Self::start) with extra environment variables, which win
    /// over the ones set here (`WASMSINK_LISTEN` among them).
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        let config_path = dir.join("wasmsink.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = (0..)
            .map(|n| dir.join(format!("wasmsink-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let out = File::create(&log).expect("log file");
        // Each process gets its own API port and data directory (kept across
        // restarts in the same `dir`).
        let listen = env
            .iter()
            .find(|(name, _)| *name == "WASMSINK_LISTEN")
            .map_or_else(
                || format!("127.0.0.1:{}", super::free_port()),
                |(_, value)| (*value).to_owned(),
            );
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasmsink"));
        command
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,wasmsink=debug")
            .env("WASMSINK_LISTEN", &listen)
            .env("WASMSINK_DATA_DIR", dir.join("data"))
            .env_remove("WASMSINK_API_KEYS")
            .env_remove("WASMSINK_API_KEYS_FILE")
            .env_remove("WASMSINK_AUTH");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn wasmsink");
        Self {
            child,
            log,
            api: format!("http://{listen}"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The REST API's base URL, e.g. `http://127.0.0.1:40123`.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// Waits until the REST API is listening.
    pub async fn wait_for_api(&self) {
        self.wait_for_log("REST API listening", Duration::from_secs(30))
            .await;
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "\"{needle}\" not logged within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the connector has its partitions.
    pub async fn wait_until_assigned(&self) {
        self.wait_for_log("partitions assigned", Duration::from_secs(30))
            .await;
    }

    /// SIGKILL: no chance to commit anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        self.wait_exit(timeout)
    }

    /// Replaces the configuration file and sends SIGHUP, which makes the
    /// process apply the connector changes live.
    pub fn reload(&self, dir: &Path, config: &str) {
        std::fs::write(dir.join("wasmsink.toml"), config).expect("rewrite config");
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "kill -HUP");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wasmsink did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Wasmsink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
