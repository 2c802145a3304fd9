// systemd service notification (sd_notify(3)) without libsystemd: one datagram per state
// change to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
// namespace). The protocol is newline-separated KEY=VALUE text; see systemd.service(5)
// Type=notify and WatchdogSec=. Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so
// the node behaves the same under a test harness, a container or a terminal.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "common/status.h"

namespace trialmesh::ops {

// Sends `state` (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET. OK when the variable is
// unset (not run by systemd). An error names the socket and the errno text; the caller logs it
// and carries on (a missed notification must not stop the node, systemd will time out instead).
Status sdNotify(const std::string& state);

// The interval at which the watchdog must be pinged: half of $WATCHDOG_USEC, as systemd
// recommends, when the watchdog is enabled for this process ($WATCHDOG_PID unset or ours).
std::optional<std::chrono::milliseconds> sdWatchdogInterval();

// "RELOADING=1\nMONOTONIC_USEC=<now>" as Type=notify-reload (systemd >= 253) requires; older
// systemd ignores the extra field.
std::string sdReloadingMessage();

}  // namespace trialmesh::ops
