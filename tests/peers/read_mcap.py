"""Reads an MCAP bag with the independent Python `mcap` and `mcap-ros2-support` packages,
decoding every message with the schema stored in the file, and prints one JSON object:
message counts per topic, schema names per topic, and a few decoded fields of the first
detections and sort command messages, for the Rust test to compare."""
import json
import sys

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory


def main(path):
    counts, schemas, first = {}, {}, {}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            topic = channel.topic
            counts[topic] = counts.get(topic, 0) + 1
            schemas[topic] = schema.name
            if topic in first:
                continue
            stamp = decoded.header.stamp
            item = {"stamp_ns": stamp.sec * 1_000_000_000 + stamp.nanosec,
                    "log_time": message.log_time}
            if hasattr(decoded, "detections"):
                item["labels"] = [d.label for d in decoded.detections]
                item["coin_ids"] = [d.coin_id for d in decoded.detections]
            elif hasattr(decoded, "bin"):
                item["coin_ids"] = [decoded.coin_id]
                item["bin"] = decoded.bin
            else:
                item["size"] = [getattr(decoded, "width", 0), getattr(decoded, "height", 0)]
                item["bytes"] = len(decoded.data)
            first[topic] = item
    print(json.dumps({"counts": counts, "schemas": schemas, "first": first}))


if __name__ == "__main__":
    main(sys.argv[1])
