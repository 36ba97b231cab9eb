"""Programs of their own that calm's tests, benchmarks and demo drive: the ground-truth dirtying
workload (`python -m calm.workloads.groundtruth`) and the HTTP load generator behind `calm load`."""
