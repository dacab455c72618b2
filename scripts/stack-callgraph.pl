#!/usr/bin/perl
# SPDX-License-Identifier: GPL-2.0
#
# stack-callgraph.pl - stack budget of one module build, from gcc's
# -fstack-usage (.su) and -fcallgraph-info=su (.ci) output.
#
#   stack-callgraph.pl [--frame-max N] [--chain-max N] DIR
#
# Prints:
#   FRAME  <bytes> <qualifier> <function>     every module function (the
#                                             larger of gcc's figure and
#                                             checkstack.pl's, --checkstack)
#   CHAIN  <total> f1(a) > f2(b) > ...         deepest call chain inside
#                                             the module (sum of frames)
#   CTX    <entry> -> <callee>                every function reachable
#                                             from a completion-context
#                                             entry point (bio end_io)
# and "BUDGET FAIL ..." lines, exiting 1, when a frame is larger than
# --frame-max (default 256), the deepest chain reaches --chain-max
# (default 1024), a frame is dynamic and unbounded, recursion exists
# inside the module, or the end_io path reaches anything not on the
# allow-list (only: record the status, llist_add, queue the work,
# account in-flight under a spinlock, wake the drain waiter, bio_put).
use strict;
use warnings;
use File::Find;
use Getopt::Long;

my $frame_max = 256;
my $chain_max = 1024;
my $ctx_entry = '_end_io$';
my $checkstack;
GetOptions('frame-max=i' => \$frame_max, 'chain-max=i' => \$chain_max,
	   'ctx-entry=s' => \$ctx_entry, 'checkstack=s' => \$checkstack)
	or die "usage\n";
my $dir = shift or die "usage: $0 [--frame-max N] [--chain-max N] DIR\n";

# Completion (irq/softirq) context may call only these outside the module.
my %ctx_allow = map { $_ => 1 } qw(
	_raw_spin_lock_irqsave _raw_spin_unlock_irqrestore
	_raw_spin_lock _raw_spin_unlock __wake_up llist_add_batch
	vhost_work_queue vhost_vq_work_queue bio_put __stack_chk_fail
	__x86_return_thunk __fentry__
);

my (%frame, %qual, %edges, %is_mod);
my @su, my @ci;
find(sub { push @su, $File::Find::name if /\.su$/ && !/\.mod\.su$/;
	   push @ci, $File::Find::name if /\.ci$/ && !/\.mod\.ci$/; }, $dir);
die "no .su files under $dir (build with -fstack-usage)\n" unless @su;
die "no .ci files under $dir (build with -fcallgraph-info=su)\n" unless @ci;

for my $f (@su) {
	open my $fh, '<', $f or die "$f: $!\n";
	while (<$fh>) {
		chomp;
		my ($loc, $bytes, $q) = split /\t/;
		my ($fn) = $loc =~ /:([^:]+)$/;
		$frame{$fn} = $bytes;
		$qual{$fn} = $q;
		$is_mod{$fn} = 1;
	}
}

# checkstack.pl output on the .ko: keep the larger of the two figures
# (checkstack sees the final "sub $N,%rsp" of the object code).
if (defined $checkstack) {
	open my $fh, '<', $checkstack or die "$checkstack: $!\n";
	while (<$fh>) {
		next unless /\s(\S+) \[[^\]]+\]:\s*(\d+)/;
		my ($fn, $b) = ($1, $2);
		$fn =~ s/\.\d+$//;	# foo.isra.0 -> foo.isra
		next unless exists $frame{$fn};
		if ($b > $frame{$fn}) {
			$frame{$fn} = $b;
			$qual{$fn} .= ",checkstack";
		}
	}
}

# "file.c:vhost_blk_dwz_seg.isra.0" -> "vhost_blk_dwz_seg.isra" (.su naming)
sub short
{
	my $t = shift;
	$t =~ s/^.*:([^:]+)$/$1/;
	$t =~ s/\.\d+$//;
	return $t;
}

for my $f (@ci) {
	open my $fh, '<', $f or die "$f: $!\n";
	while (<$fh>) {
		next unless /^edge: \{ sourcename: "([^"]*)" targetname: "([^"]*)"/;
		my ($s, $t) = (short($1), short($2));
		$edges{$s}{$t} = 1;
	}
}

my $fail = 0;
for my $fn (sort { $frame{$b} <=> $frame{$a} || $a cmp $b } keys %frame) {
	printf "FRAME %5d %-16s %s\n", $frame{$fn}, $qual{$fn}, $fn;
	if ($frame{$fn} > $frame_max) {
		print "BUDGET FAIL: frame of $fn is $frame{$fn} bytes > $frame_max\n";
		$fail = 1;
	}
	if ($qual{$fn} =~ /dynamic/ && $qual{$fn} !~ /bounded/) {
		print "BUDGET FAIL: $fn has an unbounded dynamic frame\n";
		$fail = 1;
	}
}

# Deepest chain: longest path over module functions (frames summed).
my (%best, %next, %state);
sub depth {
	my $fn = shift;
	return $best{$fn} if ($state{$fn} // 0) == 2;
	if (($state{$fn} // 0) == 1) {
		print "BUDGET FAIL: recursion inside the module through $fn\n";
		$fail = 1;
		return 0;
	}
	$state{$fn} = 1;
	my ($b, $n) = (0, undef);
	for my $t (keys %{ $edges{$fn} // {} }) {
		next unless $is_mod{$t};
		my $d = depth($t);
		($b, $n) = ($d, $t) if $d > $b;
	}
	$state{$fn} = 2;
	$next{$fn} = $n;
	return $best{$fn} = $frame{$fn} + $b;
}
my ($top, $topd) = (undef, -1);
for my $fn (sort keys %frame) {
	my $d = depth($fn);
	($top, $topd) = ($fn, $d) if $d > $topd;
}
my @chain;
for (my $f = $top; defined $f; $f = $next{$f}) {
	push @chain, "$f($frame{$f})";
}
printf "CHAIN %5d %s\n", $topd, join(' > ', @chain);
if ($topd >= $chain_max) {
	print "BUDGET FAIL: deepest module chain is $topd bytes >= $chain_max\n";
	$fail = 1;
}

# Completion context: what the end_io callback can reach.
my @entries = grep { /$ctx_entry/ } sort keys %frame;
if (!@entries) {
	print "BUDGET FAIL: no completion entry point matching /$ctx_entry/\n";
	$fail = 1;
}
for my $e (@entries) {
	my %seen = ($e => 1);
	my @todo = ($e);
	while (my $f = shift @todo) {
		for my $t (sort keys %{ $edges{$f} // {} }) {
			next if $seen{$t}++;
			print "CTX   $e -> $t", ($is_mod{$t} ? " (module)" : ""), "\n";
			if ($is_mod{$t}) {
				push @todo, $t;
			} elsif (!$ctx_allow{$t}) {
				print "BUDGET FAIL: completion context ($e) reaches $t\n";
				$fail = 1;
			}
		}
	}
}
exit $fail;
