# SPDX-License-Identifier: GPL-2.0
# Stack budget of vhost_blk.ko (robustness engineer): Documentation/robustness.rst.
#
#   make stack-report [LINE=6.1]          per-function frames, deepest module
#                                         chain, end_io reachability (static),
#                                         for LINE or every line
#   make stack-report-runtime [LINE=6.1]  the same plus the ftrace stack tracer
#                                         maximum while the stress tool runs in
#                                         the line's VM

.PHONY: stack-report stack-report-runtime

stack-report:
	@scripts/stack-report.sh $(LINE)

stack-report-runtime:
	@scripts/stack-report.sh --runtime $(LINE)
