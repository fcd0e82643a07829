"""A ROS 2 peer on Cyclone DDS, as a node on rmw_cyclonedds would be: publishes one camera
frame on rt/camera/image_raw until coin_sorter_node answers on rt/coin_sorter/detections and
rt/coin_sorter/detections_2d (vision_msgs), then prints both answers as JSON on stdout.

Usage: cyclone_peer.py --raw FILE --width W --height H --encoding rgb8 --stamp-ns NS
Bounded: gives up after --timeout seconds (exit 3). Run it inside scripts/netns.sh.
"""
import argparse
import json
import sys
import time

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ros_types import CoinDetectionArray, Detection2DArray, Header, Image, Time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domain", type=int, default=0)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--encoding", default="rgb8")
    ap.add_argument("--stamp-ns", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    data = open(args.raw, "rb").read()
    bpp = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}[args.encoding]
    stamp = Time(sec=args.stamp_ns // 1_000_000_000, nanosec=args.stamp_ns % 1_000_000_000)
    msg = Image(header=Header(stamp=stamp, frame_id="cyclone_camera"), height=args.height,
                width=args.width, encoding=args.encoding, is_bigendian=0,
                step=args.width * bpp, data=list(data))

    # ROS 2 puts plain CDR (XCDR1) on the wire; say so explicitly.
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    reliable = Qos(Policy.Reliability.Reliable(duration(seconds=1)),
                   Policy.History.KeepLast(100), xcdr1)
    participant = DomainParticipant(args.domain)
    image_topic = Topic(participant, "rt/camera/image_raw", Image, qos=Qos(xcdr1))
    det_topic = Topic(participant, "rt/coin_sorter/detections", CoinDetectionArray, qos=Qos(xcdr1))
    writer = DataWriter(participant, image_topic,
                        qos=Qos(Policy.Reliability.Reliable(duration(seconds=1)),
                                Policy.History.KeepLast(1), xcdr1))
    reader = DataReader(participant, det_topic, qos=reliable)
    vision_topic = Topic(participant, "rt/coin_sorter/detections_2d", Detection2DArray,
                         qos=Qos(xcdr1))
    vision_reader = DataReader(participant, vision_topic, qos=reliable)
    answer = None
    vision = None

    deadline = time.monotonic() + args.timeout
    next_send = 0.0
    sent = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            writer.write(msg)
            sent += 1
            next_send = now + 1.0
        for s in reader.take(N=100):
            st = s.header.stamp
            if answer is None and st.sec * 1_000_000_000 + st.nanosec == args.stamp_ns:
                answer = s
        for v in vision_reader.take(N=100):
            st = v.header.stamp
            if vision is None and st.sec * 1_000_000_000 + st.nanosec == args.stamp_ns:
                vision = v
        if answer is not None and vision is not None:
            print(json.dumps({
                "sent": sent,
                "frame_id": answer.header.frame_id,
                "stamp_ns": args.stamp_ns,
                "detections": [{"coin_id": d.coin_id, "label": d.label,
                                "confidence": d.confidence, "bin": d.bin,
                                "rejected": d.rejected, "shift_score": d.shift_score,
                                "out_of_distribution": d.out_of_distribution,
                                "x": d.x, "y": d.y,
                                "radius": d.radius} for d in answer.detections],
                "vision": [{"id": d.id, "frame_id": d.header.frame_id,
                            "class_id": [r.hypothesis.class_id for r in d.results],
                            "score": [r.hypothesis.score for r in d.results],
                            "center": [d.bbox.center.position.x, d.bbox.center.position.y],
                            "size": [d.bbox.size_x, d.bbox.size_y],
                            "covariance_len": len(d.results[0].pose.covariance)
                            if d.results else 0}
                           for d in vision.detections],
            }))
            return 0
        time.sleep(0.05)
    print(f"no detections (got {answer is not None}) and vision_msgs detections "
          f"(got {vision is not None}) for stamp {args.stamp_ns} within {args.timeout} s "
          f"({sent} frames sent)", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
