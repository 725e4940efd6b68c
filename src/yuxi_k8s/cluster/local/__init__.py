"""The local provider: a single-node cluster of host processes from the pinned binaries.

``cluster.LocalCluster`` brings it up and down; ``layout`` names every path,
address and interface it uses, so ``down`` knows exactly what to remove.
"""
