//! Bag reading against real recordings (rosbag2's own test bags and the coin bags), against
//! bags written here in every storage and compression mode, and against damaged copies.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use coin_sorter::bag::cdr::{decode_cdr, encode_cdr};
use coin_sorter::bag::{BagCompression, BagMessage, BagReader};
use serde::{Deserialize, Serialize};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

fn data(rel: &str) -> PathBuf {
    Path::new(DATA).join(rel)
}

// ---------------------------------------------------------------------------------------------
// metadata.yaml as the test reads it, independently of the reader under test.

#[derive(Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    storage_identifier: String,
    relative_file_paths: Vec<String>,
    message_count: u64,
    starting_time: Stamp,
    duration: Duration,
    topics_with_message_count: Vec<TopicWithCount>,
}

#[derive(Deserialize)]
struct Stamp {
    nanoseconds_since_epoch: u64,
}

#[derive(Deserialize)]
struct Duration {
    nanoseconds: u64,
}

#[derive(Deserialize)]
struct TopicWithCount {
    topic_metadata: TopicMetadata,
    message_count: u64,
}

#[derive(Deserialize)]
struct TopicMetadata {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    serialization_format: String,
}

fn read_metadata(dir: &Path) -> Metadata {
    let text = fs::read_to_string(dir.join("metadata.yaml")).unwrap();
    serde_yaml::from_str::<MetadataFile>(&text).unwrap().rosbag2_bagfile_information
}

/// Every folder with a `metadata.yaml` below `root`.
fn bag_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("metadata.yaml").is_file() {
            found.push(dir.clone());
        }
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// topic -> (type, serialization format, count)
type TopicTable = BTreeMap<String, (String, String, u64)>;

fn expected_topics(meta: &Metadata) -> TopicTable {
    meta.topics_with_message_count
        .iter()
        .map(|t| {
            let m = &t.topic_metadata;
            let row = (m.type_name.clone(), m.serialization_format.clone(), t.message_count);
            (m.name.clone(), row)
        })
        .collect()
}

fn collect_ok(reader: &BagReader, topics: Option<&[String]>) -> Vec<BagMessage> {
    reader.messages(topics).unwrap().collect::<Result<Vec<_>>>().unwrap()
}

fn count_by_topic(messages: &[BagMessage]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m.topic.clone()).or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Real bags.

#[test]
fn every_shared_bag_matches_its_metadata_yaml() {
    let mut dirs = bag_dirs(&data("rosbag2-samples"));
    dirs.extend(bag_dirs(&data("bags")));
    // 4 mcap + 3 sqlite3 rosbag2 samples, 2 coin bags: a missing bag must fail, not shrink.
    assert_eq!(dirs.len(), 9, "bags found: {dirs:?}");
    for dir in &dirs {
        let meta = read_metadata(dir);
        let reader = BagReader::open(dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        let info = reader.info();
        let here = dir.display();

        assert_eq!(info.storage, meta.storage_identifier, "{here}");
        assert_eq!(info.compression, BagCompression::None, "{here}");
        let files: Vec<PathBuf> = meta.relative_file_paths.iter().map(|f| dir.join(f)).collect();
        assert_eq!(info.files, files, "{here}");
        assert!(info.warnings.is_empty(), "{here}: {:?}", info.warnings);

        let actual: TopicTable = info
            .topics
            .iter()
            .map(|t| {
                let row = (t.type_name.clone(), t.serialization_format.clone(), t.message_count);
                (t.name.clone(), row)
            })
            .collect();
        let expected = expected_topics(&meta);
        assert_eq!(actual, expected, "{here}");
        assert_eq!(info.topics.len(), meta.topics_with_message_count.len(), "{here}");
        assert_eq!(info.message_count, meta.message_count, "{here}");

        let messages = collect_ok(&reader, None);
        assert_eq!(messages.len() as u64, meta.message_count, "{here}");
        let streamed = count_by_topic(&messages);
        let expected: BTreeMap<String, u64> = expected
            .iter()
            .filter(|(_, row)| row.2 > 0)
            .map(|(name, row)| (name.clone(), row.2))
            .collect();
        assert_eq!(streamed, expected, "{here}");
        for m in &messages {
            let topic = &meta.topics_with_message_count;
            let declared = topic.iter().find(|t| t.topic_metadata.name == m.topic).unwrap();
            assert_eq!(m.type_name, declared.topic_metadata.type_name, "{here}");
            assert!(m.data.len() >= 4, "{here}: a message without CDR header");
        }
        if files.len() == 1 {
            let in_order = messages.windows(2).all(|w| w[0].log_time_ns <= w[1].log_time_ns);
            assert!(in_order, "{here}: messages out of log-time order");
        }
        // The counted time span must agree with what rosbag2 wrote, except in `wbag`, whose
        // metadata.yaml was written by hand for rosbag2's tests: its files hold times 1000..2998.
        let span = if dir.ends_with("wbag") {
            (1000, 1998)
        } else {
            (meta.starting_time.nanoseconds_since_epoch, meta.duration.nanoseconds)
        };
        assert_eq!((info.start_ns, info.duration_ns), span, "{here}");
    }
}

#[test]
fn a_bare_storage_file_reads_like_its_folder() {
    for (dir, file) in [
        ("bags/bgr8-mcap", "bgr8-mcap.mcap"),
        ("bags/jpeg-sqlite3", "jpeg-sqlite3.db3"),
        ("rosbag2-samples/sqlite3/talker", "talker.db3"),
    ] {
        let folder = BagReader::open(&data(dir)).unwrap();
        let bare = BagReader::open(&data(dir).join(file)).unwrap();
        assert_eq!(bare.info().topics, folder.info().topics, "{file}");
        assert_eq!(bare.info().start_ns, folder.info().start_ns, "{file}");
        assert_eq!(bare.info().files, vec![data(dir).join(file)]);
        assert_eq!(collect_ok(&bare, None), collect_ok(&folder, None), "{file}");
    }
}

#[derive(Debug, Deserialize)]
struct Time {
    sec: i32,
    nanosec: u32,
}

#[derive(Debug, Deserialize)]
struct Header {
    stamp: Time,
    frame_id: String,
}

/// sensor_msgs/msg/Image
#[derive(Debug, Deserialize)]
struct Image {
    header: Header,
    height: u32,
    width: u32,
    encoding: String,
    is_bigendian: u8,
    step: u32,
    data: Vec<u8>,
}

/// sensor_msgs/msg/CompressedImage
#[derive(Debug, Deserialize)]
struct CompressedImage {
    header: Header,
    format: String,
    data: Vec<u8>,
}

#[derive(Deserialize)]
struct GroundTruth {
    stamp_ns: u64,
    source: String,
}

fn ground_truth(dir: &Path) -> Vec<GroundTruth> {
    fs::read_to_string(dir.join("ground_truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<GroundTruth>(l).unwrap())
        .collect()
}

fn ground_truth_stamps(dir: &Path) -> Vec<u64> {
    ground_truth(dir).iter().map(|g| g.stamp_ns).collect()
}

fn stamp_ns(h: &Header) -> u64 {
    u64::try_from(h.stamp.sec).unwrap() * 1_000_000_000 + u64::from(h.stamp.nanosec)
}

#[test]
fn coin_bag_images_decode_and_carry_the_ground_truth_stamps() {
    let dir = data("bags/bgr8-mcap");
    let reader = BagReader::open(&dir).unwrap();
    let truth = ground_truth(&dir);
    let messages = collect_ok(&reader, None);
    assert_eq!(messages.len(), truth.len());
    for (m, truth) in messages.iter().zip(&truth) {
        let image: Image = decode_cdr(&m.data).unwrap();
        assert_eq!(stamp_ns(&image.header), truth.stamp_ns);
        assert_eq!(image.encoding, "bgr8");
        assert_eq!(image.is_bigendian, 0);
        assert_eq!(image.step, image.width * 3);
        assert_eq!(image.data.len(), (image.step * image.height) as usize);
        // The frame is the source photo scaled to a longest side of at most 640 px.
        let photo = data("coins-photos/images").join(format!("{}.jpg", truth.source));
        let (w, h) = image::image_dimensions(&photo).unwrap();
        let scale = (640.0 / f64::from(w.max(h))).min(1.0);
        let near = |got: u32, full: u32| (f64::from(got) - f64::from(full) * scale).abs() <= 1.0;
        assert!(near(image.width, w) && near(image.height, h), "{} vs {w}x{h}", truth.source);
    }

    let dir = data("bags/jpeg-sqlite3");
    let reader = BagReader::open(&dir).unwrap();
    let mut stamps = Vec::new();
    for m in collect_ok(&reader, None) {
        let image: CompressedImage = decode_cdr(&m.data).unwrap();
        assert!(image.format.contains("jpeg"), "format {:?}", image.format);
        assert_eq!(&image.data[..3], &[0xff, 0xd8, 0xff], "JPEG start of image");
        stamps.push(stamp_ns(&image.header));
        assert!(!image.header.frame_id.contains('\0'));
    }
    assert_eq!(stamps, ground_truth_stamps(&dir));
}

#[test]
fn topic_filter_keeps_only_the_named_topics() {
    for dir in ["rosbag2-samples/mcap/talker", "rosbag2-samples/sqlite3/talker"] {
        let reader = BagReader::open(&data(dir)).unwrap();
        let wanted = vec!["/topic".to_string()];
        let messages = collect_ok(&reader, Some(&wanted));
        assert_eq!(messages.len(), 10, "{dir}");
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.topic, "/topic");
            // std_msgs/msg/String from the ROS 2 talker demo.
            let text: String = decode_cdr(&m.data).unwrap();
            assert_eq!(text, format!("Hello, world! {i}"), "{dir}");
        }
        let none = collect_ok(&reader, Some(&["/parameter_events".to_string()]));
        assert!(none.is_empty(), "{dir}");
        let err = reader.messages(Some(&["/nope".to_string()])).err().unwrap();
        assert!(err.to_string().contains("\"/nope\""), "{err}");
    }
}

#[test]
fn info_display_lists_layout_and_topics() {
    let reader = BagReader::open(&data("rosbag2-samples/mcap/talker")).unwrap();
    let text = reader.info().to_string();
    for expected in [
        "Storage:      mcap",
        "talker.mcap",
        "Duration:     4.531096768 s",
        "Start:        2020-04-02 22:23:55.112411371 UTC",
        "Messages:     20",
        "/rosout",
        "rcl_interfaces/msg/Log",
        "/parameter_events",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    let rosout = text.lines().find(|l| l.contains("/rosout")).unwrap();
    let fields: Vec<_> = rosout.split_whitespace().collect();
    assert_eq!(fields, ["/rosout", "rcl_interfaces/msg/Log", "cdr", "10"]);
    let params = text.lines().find(|l| l.contains("/parameter_events")).unwrap();
    assert!(params.trim_end().ends_with(" 0"), "{params}");
}

// ---------------------------------------------------------------------------------------------
// Damaged files.

/// Writes the first 60% of `source` to `dest`.
fn truncate_copy(source: &Path, dest: &Path) -> u64 {
    let bytes = fs::read(source).unwrap();
    let keep = bytes.len() * 6 / 10;
    fs::write(dest, &bytes[..keep]).unwrap();
    keep as u64
}

/// Streams `reader` to the end: the messages before the first error, and the errors.
fn drain(reader: &BagReader) -> (Vec<BagMessage>, Vec<String>) {
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for item in reader.messages(None).unwrap() {
        match item {
            Ok(m) if errors.is_empty() => ok.push(m),
            Ok(_) => panic!("a message after an error"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (ok, errors)
}

#[test]
fn truncated_mcap_yields_its_intact_messages_then_one_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.mcap");
    let kept = truncate_copy(&data("bags/bgr8-mcap/bgr8-mcap.mcap"), &cut);

    let reader = BagReader::open(&cut).unwrap();
    let info = reader.info();
    assert_eq!(info.warnings.len(), 1, "{:?}", info.warnings);
    assert!(info.warnings[0].contains(&cut.display().to_string()), "{:?}", info.warnings);
    assert!(info.message_count > 0 && info.message_count < 30, "{}", info.message_count);

    let (ok, errors) = drain(&reader);
    assert_eq!(ok.len() as u64, info.message_count);
    assert_eq!(errors.len(), 1);
    let expected = format!("file {} is truncated at byte {kept}", cut.display());
    assert!(errors[0].contains(&expected), "{}", errors[0]);
    // Every delivered message is intact: byte for byte the start of the whole bag.
    let whole = collect_ok(&BagReader::open(&data("bags/bgr8-mcap")).unwrap(), None);
    assert_eq!(ok, whole[..ok.len()]);
}

#[test]
fn truncated_db3_in_a_bag_folder_yields_its_intact_messages_then_one_error() {
    let tmp = tempfile::tempdir().unwrap();
    let source = data("bags/jpeg-sqlite3");
    fs::copy(source.join("metadata.yaml"), tmp.path().join("metadata.yaml")).unwrap();
    let cut = tmp.path().join("jpeg-sqlite3.db3");
    let kept = truncate_copy(&source.join("jpeg-sqlite3.db3"), &cut);

    let reader = BagReader::open(tmp.path()).unwrap();
    let info = reader.info();
    assert!(!info.warnings.is_empty());
    assert!(info.warnings[0].contains(&cut.display().to_string()), "{:?}", info.warnings);

    let (ok, errors) = drain(&reader);
    assert!(!ok.is_empty() && ok.len() < 30, "{} messages", ok.len());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains(&cut.display().to_string()), "{}", errors[0]);
    let expected = format!(
        "file {} is truncated at byte {} (its header says {} bytes): read {} messages before \
         the damage",
        cut.display(),
        kept,
        fs::metadata(source.join("jpeg-sqlite3.db3")).unwrap().len(),
        ok.len()
    );
    assert!(errors[0].starts_with(&expected), "{}", errors[0]);
    // Every delivered message is intact: byte for byte the start of the whole bag.
    let whole = collect_ok(&BagReader::open(&source).unwrap(), None);
    assert_eq!(ok, whole[..ok.len()]);
}

#[test]
fn every_truncation_point_gives_intact_messages_then_one_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (source, name, total) in [
        ("rosbag2-samples/mcap/cdr_test/cdr_test_0.mcap", "cut.mcap", 7),
        ("rosbag2-samples/sqlite3/cdr_test/cdr_test_0.db3", "cut.db3", 7),
    ] {
        let bytes = fs::read(data(source)).unwrap();
        let intact = collect_ok(&BagReader::open(&data(source)).unwrap(), None);
        assert_eq!(intact.len(), total);
        let cut = tmp.path().join(name);
        for keep in (0..bytes.len()).step_by(97) {
            fs::write(&cut, &bytes[..keep]).unwrap();
            let Ok(reader) = BagReader::open(&cut) else {
                continue; // Too little left to tell the storage: an error, which is fine.
            };
            let (ok, errors) = drain(&reader);
            assert_eq!(errors.len(), 1, "{name} cut at {keep}: {errors:?}");
            assert!(errors[0].contains(name), "{}", errors[0]);
            assert!(ok.len() <= total, "{name} cut at {keep}");
            // Whatever is delivered is intact: the same messages as in the whole file.
            for m in &ok {
                assert!(intact.contains(m), "{name} cut at {keep}: a damaged message");
            }
        }
    }
}

#[test]
fn garbage_is_an_error_naming_the_file_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.mcap");
    fs::write(&junk, b"not a bag at all").unwrap();
    let err = BagReader::open(&junk).unwrap_err();
    assert!(format!("{err:#}").contains("junk.mcap"), "{err:#}");

    // Right magic, then noise: opens, reports the damage, streams just the error.
    let mut bytes = mcap::MAGIC.to_vec();
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    fs::write(&junk, &bytes).unwrap();
    let reader = BagReader::open(&junk).unwrap();
    assert_eq!(reader.info().message_count, 0);
    assert_eq!(reader.info().warnings.len(), 1, "{:?}", reader.info().warnings);
    let (ok, errors) = drain(&reader);
    assert!(ok.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("junk.mcap"), "{}", errors[0]);

    let missing = BagReader::open(&tmp.path().join("nothing-here")).unwrap_err();
    assert!(format!("{missing:#}").contains("nothing-here"), "{missing:#}");
}

// ---------------------------------------------------------------------------------------------
// Bags written here: every storage and compression mode rosbag2 has.

/// std_msgs/msg/String
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StringMsg {
    data: String,
}

/// (topic, log time) in the order written; log times deliberately not sorted.
const WRITTEN: [(&str, u64); 5] = [("/b", 300), ("/a", 100), ("/a", 200), ("/b", 50), ("/a", 400)];
const TYPE: &str = "std_msgs/msg/String";

fn payload(i: usize) -> Vec<u8> {
    encode_cdr(&StringMsg { data: format!("message {i}") }).unwrap()
}

fn stored(i: usize, per_message: bool) -> Vec<u8> {
    if per_message { zstd::encode_all(&payload(i)[..], 3).unwrap() } else { payload(i) }
}

fn write_mcap(path: &Path, options: mcap::WriteOptions, per_message: bool) {
    let file = fs::File::create(path).unwrap();
    let mut writer = options.profile("ros2").create(std::io::BufWriter::new(file)).unwrap();
    let schema = writer.add_schema(TYPE, "ros2msg", b"string data").unwrap();
    let mut ids = HashMap::new();
    for topic in ["/a", "/b", "/unused"] {
        let id = writer.add_channel(schema, topic, "cdr", &BTreeMap::new()).unwrap();
        ids.insert(topic, id);
    }
    for (i, (topic, log_time)) in WRITTEN.iter().enumerate() {
        let header = mcap::records::MessageHeader {
            channel_id: ids[topic],
            sequence: i as u32,
            log_time: *log_time,
            publish_time: *log_time,
        };
        writer.write_to_known_channel(&header, &stored(i, per_message)).unwrap();
    }
    writer.finish().unwrap();
    std::io::Write::flush(&mut writer.into_inner()).unwrap();
}

fn write_db3(path: &Path, per_message: bool) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, \
         serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
         CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, \
         timestamp INTEGER NOT NULL, data BLOB NOT NULL);
         CREATE INDEX timestamp_idx ON messages (timestamp ASC);",
    )
    .unwrap();
    for (id, topic) in [(1, "/a"), (2, "/b"), (3, "/unused")] {
        conn.execute(
            "INSERT INTO topics VALUES (?1, ?2, ?3, 'cdr', '')",
            rusqlite::params![id, topic, TYPE],
        )
        .unwrap();
    }
    for (i, (topic, log_time)) in WRITTEN.iter().enumerate() {
        let topic_id = if *topic == "/a" { 1 } else { 2 };
        conn.execute(
            "INSERT INTO messages (topic_id, timestamp, data) VALUES (?1, ?2, ?3)",
            rusqlite::params![topic_id, *log_time as i64, stored(i, per_message)],
        )
        .unwrap();
    }
}

fn write_metadata(dir: &Path, storage: &str, file: &str, mode: &str) {
    let text = format!(
        "rosbag2_bagfile_information:\n  version: 8\n  storage_identifier: {storage}\n  \
         relative_file_paths:\n    - {file}\n  compression_format: {}\n  \
         compression_mode: {mode}\n",
        if mode.is_empty() { "''" } else { "zstd" },
    );
    fs::write(dir.join("metadata.yaml"), text).unwrap();
}

fn compress_file(path: &Path) -> PathBuf {
    let mut zst = path.as_os_str().to_owned();
    zst.push(".zstd");
    let zst = PathBuf::from(zst);
    fs::write(&zst, zstd::encode_all(&fs::read(path).unwrap()[..], 3).unwrap()).unwrap();
    fs::remove_file(path).unwrap();
    zst
}

/// Expected stream: all messages by log time, with their original (uncompressed) payloads.
fn expected_by_log_time() -> Vec<(String, u64, Vec<u8>)> {
    let mut all: Vec<_> = WRITTEN
        .iter()
        .enumerate()
        .map(|(i, (topic, t))| (topic.to_string(), *t, payload(i)))
        .collect();
    all.sort_by_key(|m| m.1);
    all
}

fn check_written_bag(path: &Path, compression: BagCompression, expected_order: &[u64]) {
    let reader = BagReader::open(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    let info = reader.info();
    let here = path.display();
    assert_eq!(info.compression, compression, "{here}");
    assert!(info.warnings.is_empty(), "{here}: {:?}", info.warnings);
    let counts: Vec<_> = info.topics.iter().map(|t| (t.name.as_str(), t.message_count)).collect();
    assert_eq!(counts, [("/a", 3), ("/b", 2), ("/unused", 0)], "{here}");
    assert_eq!(info.message_count, 5);
    assert_eq!((info.start_ns, info.duration_ns), (50, 350), "{here}");

    let messages = collect_ok(&reader, None);
    let times: Vec<u64> = messages.iter().map(|m| m.log_time_ns).collect();
    assert_eq!(times, expected_order, "{here}");
    let expected: HashMap<u64, (String, Vec<u8>)> =
        expected_by_log_time().into_iter().map(|(topic, t, d)| (t, (topic, d))).collect();
    for m in &messages {
        let (topic, data) = &expected[&m.log_time_ns];
        assert_eq!((&m.topic, &m.data), (topic, data), "{here} at {}", m.log_time_ns);
        assert_eq!(m.type_name, TYPE);
        let text: StringMsg = decode_cdr(&m.data).unwrap();
        assert!(text.data.starts_with("message "), "{here}");
    }
    let only_b = collect_ok(&reader, Some(&["/b".to_string()]));
    let b_times: Vec<u64> = only_b.iter().map(|m| m.log_time_ns).collect();
    let expected_b: Vec<u64> =
        expected_order.iter().copied().filter(|t| [50, 300].contains(t)).collect();
    assert_eq!(b_times, expected_b, "{here}");
}

#[test]
fn written_bags_in_every_storage_and_compression_mode_read_back() {
    let sorted: Vec<u64> = expected_by_log_time().iter().map(|m| m.1).collect();
    for storage in ["mcap", "sqlite3"] {
        for mode in ["", "MESSAGE", "FILE"] {
            let tmp = tempfile::tempdir().unwrap();
            let name = if storage == "mcap" { "w_0.mcap" } else { "w_0.db3" };
            let file = tmp.path().join(name);
            let per_message = mode == "MESSAGE";
            if storage == "mcap" {
                write_mcap(&file, mcap::WriteOptions::new(), per_message);
            } else {
                write_db3(&file, per_message);
            }
            let listed = if mode == "FILE" {
                let zst = compress_file(&file);
                zst.file_name().unwrap().to_str().unwrap().to_owned()
            } else {
                name.to_owned()
            };
            write_metadata(tmp.path(), storage, &listed, mode);
            let compression = match mode {
                "" => BagCompression::None,
                "MESSAGE" => BagCompression::Message,
                _ => BagCompression::File,
            };
            check_written_bag(tmp.path(), compression, &sorted);
            if mode == "FILE" {
                // A bare compressed file works too.
                check_written_bag(&tmp.path().join(&listed), compression, &sorted);
            }
        }
    }
}

#[test]
fn mcap_without_summary_or_chunks_is_counted_by_scanning() {
    let sorted: Vec<u64> = expected_by_log_time().iter().map(|m| m.1).collect();
    let file_order: Vec<u64> = WRITTEN.iter().map(|w| w.1).collect();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        // No summary section: counts come from a scan, order from the chunk contents.
        ("no_summary.mcap", mcap::WriteOptions::new().emit_summary_records(false), &file_order),
        // Summary but no chunks: counts from statistics, messages in file order.
        ("unchunked.mcap", mcap::WriteOptions::new().use_chunks(false), &file_order),
        // Tiny chunks overlapping in time: the chunk index still gives log-time order.
        ("small_chunks.mcap", mcap::WriteOptions::new().chunk_size(Some(1)), &sorted),
    ];
    for (name, options, order) in cases {
        let path = tmp.path().join(name);
        write_mcap(&path, options, false);
        check_written_bag(&path, BagCompression::None, order);
    }
}

#[test]
fn corrupt_message_compression_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("w_0.db3");
    write_db3(&file, false);
    write_metadata(tmp.path(), "sqlite3", "w_0.db3", "MESSAGE");
    let reader = BagReader::open(tmp.path()).unwrap();
    let (ok, errors) = drain(&reader);
    assert!(ok.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("w_0.db3") && errors[0].contains("zstd"), "{}", errors[0]);
}

// ---------------------------------------------------------------------------------------------
// CDR.

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Detection {
    stamp_sec: i32,
    label: String,
    confidence: f32,
    centre: [f64; 2],
    radius_px: f64,
    bins: Vec<u16>,
    accepted: bool,
}

#[test]
fn cdr_round_trip_of_a_small_struct() {
    let msg = Detection {
        stamp_sec: -3,
        label: "2e".into(),
        confidence: 0.875,
        centre: [12.5, -7.25],
        radius_px: 31.0,
        bins: vec![1, 2, 65535],
        accepted: true,
    };
    let bytes = encode_cdr(&msg).unwrap();
    assert_eq!(&bytes[..4], &[0x00, 0x01, 0x00, 0x00]);
    // i32 at body offset 0, so its little-endian bytes follow the header directly.
    assert_eq!(&bytes[4..8], &(-3i32).to_le_bytes());
    assert_eq!(decode_cdr::<Detection>(&bytes).unwrap(), msg);
    // A truncated message is an error, not a panic or a partial value.
    assert!(decode_cdr::<Detection>(&bytes[..bytes.len() - 4]).is_err());
}
