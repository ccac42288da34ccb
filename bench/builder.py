"""Builder benchmark: profile() and build_network() cost, and training throughput of our
MobileNetV3-Small against MindCV's mobilenet_v3_small_100, side by side in one run.

    python -m bench.builder [--batch 32] [--resolution 224] [--steps 8] [--rounds 3]
"""
from __future__ import annotations

import argparse

from bench.common import summary, time_calls, write_report
from nas.models.builder import build_network
from nas.spec.profile import profile
from search_spaces import references


def _train_step(net, batch: int, resolution: int, classes: int):
    import mindspore as ms  # heavy: loaded when the benchmark runs, not on import
    import numpy as np
    from mindspore import nn

    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    step.set_train(True)
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.rand(batch, 3, resolution, resolution).astype(np.float32))
    labels = ms.Tensor(rng.randint(0, classes, batch).astype(np.int32))
    return lambda: step(images, labels).asnumpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours / MindCV")
    args = parser.parse_args()

    import mindcv  # optional (the dev extra): only the engine comparison needs it
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    figures: dict = {"args": vars(args)}
    large = references.get("mobilenet_v3_large")
    profile_ms = summary([t * 1e3 for t in time_calls(lambda: profile(large), repeats=200, warmup=5)])
    figures["profile_ms_mobilenet_v3_large"] = profile_ms
    print(f"profile(mobilenet_v3_large): median {profile_ms['median']:.3f} ms "
          f"(p10 {profile_ms['p10']:.3f}, p90 {profile_ms['p90']:.3f}); target < 5 ms")
    build = {}
    for name in references.names():
        spec = references.get(name)
        build[name] = summary([t * 1e3 for t in time_calls(lambda: build_network(spec), repeats=3, warmup=1)])
        print(f"build_network({name}): median {build[name]['median']:.0f} ms")
    figures["build_network_ms"] = build

    classes = 1000
    ours = _train_step(build_network(references.get("mobilenet_v3_small"), classes, seed=0), args.batch,
                       args.resolution, classes)
    theirs = _train_step(mindcv.create_model("mobilenet_v3_small_100", num_classes=classes), args.batch,
                         args.resolution, classes)
    for step in (ours, theirs):  # compile and warm up both before timing either
        time_calls(step, repeats=0, warmup=3)
    per_round = []
    our_times: list[float] = []
    their_times: list[float] = []
    for round_index in range(args.rounds):
        mine = time_calls(ours, repeats=args.steps, warmup=0)
        other = time_calls(theirs, repeats=args.steps, warmup=0)
        our_times += mine
        their_times += other
        ratio = summary(other)["median"] / summary(mine)["median"]
        per_round.append(ratio)
        print(f"round {round_index + 1}: ours {args.batch / summary(mine)['median']:.1f} img/s, "
              f"MindCV {args.batch / summary(other)['median']:.1f} img/s, ratio {ratio:.3f}")
    ours_ips = args.batch / summary(our_times)["median"]
    theirs_ips = args.batch / summary(their_times)["median"]
    figures["train_step"] = {
        "ours_images_per_s": ours_ips, "mindcv_images_per_s": theirs_ips, "ratio": ours_ips / theirs_ips,
        "ratio_per_round": per_round, "ours_step_s": summary(our_times), "mindcv_step_s": summary(their_times)}
    print(f"training images/s at batch {args.batch}, {args.resolution} px, GRAPH mode: ours {ours_ips:.1f}, "
          f"MindCV {theirs_ips:.1f}, ratio {ours_ips / theirs_ips:.3f} (target >= 0.95)")
    write_report("builder", figures)


if __name__ == "__main__":
    main()
