#!/usr/bin/env python3
"""train.py: a stand-in training script for `hpoctl run` (standard library only).

    hpoctl run demo -n 40 -j 4 -- ./examples/train.py --lr {lr} --layers {layers}

It "trains" for --epochs epochs, printing `hpo: report EPOCH LOSS` after each
one and `hpo: value LOSS` at the end: the whole protocol hpoctl(1) needs.
The loss curve is made up: the final loss is lowest for lr near 3e-3 and 3
layers, and a poor learning rate also learns slowly, so the median pruner
can stop such trials after a few epochs. Any other program works the same
way; params also arrive as $HPO_PARAM_LR and $HPO_PARAM_LAYERS.

Nothing here flushes stdout: hpoctl sets PYTHONUNBUFFERED=1, so each report
reaches it at once even though stdout is a pipe.
"""

import argparse
import math
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=float(os.environ.get("HPO_PARAM_LR", "0.01")))
    ap.add_argument("--layers", type=int, default=int(os.environ.get("HPO_PARAM_LAYERS", "2")))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--epoch-seconds", type=float, default=0.1,
                    help="how long each pretend epoch takes")
    args = ap.parse_args()
    if not args.lr > 0:
        ap.error("--lr must be > 0")

    d = math.log10(args.lr) - math.log10(3e-3)
    final = 0.05 + 0.1 * d * d + 0.02 * abs(args.layers - 3)
    speed = 0.6 / (1.0 + d * d)
    loss = final + 2.0
    for epoch in range(args.epochs):
        time.sleep(args.epoch_seconds)
        loss = final + 2.0 * math.exp(-speed * (epoch + 1))
        print("epoch %d: loss %.4f" % (epoch, loss))
        print("hpo: report %d %.6g" % (epoch, loss))
    print("hpo: value %.6g" % loss)


if __name__ == "__main__":
    main()
