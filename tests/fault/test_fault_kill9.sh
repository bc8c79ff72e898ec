#!/usr/bin/env bash
# Fault: kill -9 of triaged at random moments, 3-5 times in one run, while
# a steady sequenced stream flows (DESIGN §4 Delivery: exactly once in
# effect). 60,000 messages at 2,500/s (tests/fault/seq.py: every tenth seq a
# unique alert, the rest duplicates of 500 fingerprints on 50 resources).
# Each kill lands a random 0-1.5 s (FAULT_SEED) after the (re)started
# triaged committed its first batch: mid-batch, between batches, while a
# commit is in flight; triaged is restarted at once with the same config
# (its group join waits out the dead member's 3 s session). Kills go on
# while the producer runs (24 s): at least 3 must land, each mid-stream
# (not all of the stream committed). Afterwards every unique seq is stored
# exactly once, every duplicate fingerprint's occurrences equal what the
# topic holds, and no alert or incident is doubled.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/fault_lib.sh"

# A 3 s session (heartbeats every 500 ms), so a restart waits ~2 s, not
# ~5 s, for the dead member to leave the group.
F_SESSION_MS=3000 F_HEARTBEAT_MS=500 f_setup
f_stream kill9 60000 2500
last=0 kills=0
while [ $kills -lt 5 ] && _stack_alive "$F_PROD"; do
    t_wait_until 60 "triaged commits after start #$F_STARTS" f_occ_at_least $((last + 1))
    ms=$(f_sleep_random 0 1500)
    t_kill9 "$T_PID"
    last=$(f_occ)
    kills=$((kills + 1))
    t_log "kill -9 #$kills, ${ms} ms after its first commit: $last occurrences committed"
    [ "$last" -lt "$F_SENT" ] || t_fail "kill #$kills landed after the whole stream was committed"
    f_start
done
[ $kills -ge 3 ] || t_fail "only $kills kills landed while the stream was produced"
f_stream_wait
f_caught_up 120
f_check kill9
f_integrity
f_finish
t_log "passed"
