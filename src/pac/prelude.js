// cntlm's PAC prelude: the standard PAC helper functions, written for cntlm (not derived from
// Mozilla's ascii_pac_utils.js). Functions that touch the system or parse addresses call Rust
// natives named __cntlm_*: resolve (";"-joined addresses), my_ips, now, in_net, in_net_ex,
// glob, sort, alert. Evaluated before the PAC itself, which may override any of these.

function isPlainHostName(host) {
  host = String(host);
  return host.indexOf(".") < 0 && host.indexOf(":") < 0;
}

function dnsDomainIs(host, domain) {
  host = String(host).toLowerCase();
  domain = String(domain).toLowerCase();
  return host.length >= domain.length &&
    host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
  host = String(host).toLowerCase();
  hostdom = String(hostdom).toLowerCase();
  if (host === hostdom) return true;
  return host.indexOf(".") < 0 && hostdom.substring(0, host.length + 1) === host + ".";
}

function dnsDomainLevels(host) {
  return String(host).split(".").length - 1;
}

function shExpMatch(str, shexp) {
  return __cntlm_glob(String(str), String(shexp));
}

function __cntlm_first_v4(list) {
  var all = list === "" ? [] : list.split(";");
  for (var i = 0; i < all.length; i++) {
    if (all[i].indexOf(":") < 0) return all[i];
  }
  return null;
}

function dnsResolve(host) {
  return __cntlm_first_v4(__cntlm_resolve(String(host)));
}

function dnsResolveEx(host) {
  return __cntlm_resolve(String(host));
}

function isResolvable(host) {
  return dnsResolve(host) !== null;
}

function isResolvableEx(host) {
  return dnsResolveEx(host) !== "";
}

function myIpAddress() {
  var v4 = __cntlm_first_v4(__cntlm_my_ips());
  return v4 === null ? "127.0.0.1" : v4;
}

function myIpAddressEx() {
  var all = __cntlm_my_ips();
  return all === "" ? "127.0.0.1" : all;
}

function isInNet(host, pattern, mask) {
  var ip = dnsResolve(host);
  if (ip === null) return false;
  return __cntlm_in_net(ip, String(pattern), String(mask));
}

// host may also be an address list such as myIpAddressEx() returns; any member may match.
function isInNetEx(host, prefix) {
  host = String(host);
  var all = host.indexOf(";") >= 0 ? host : dnsResolveEx(host);
  if (all === "") return false;
  return __cntlm_in_net_ex(all, String(prefix));
}

function sortIpAddressList(list) {
  var sorted = __cntlm_sort(String(list));
  // A Rust None arrives as undefined.
  return sorted == null ? false : sorted;
}

function getClientVersion() {
  return "1.0";
}

function convert_addr(ipchars) {
  var b = String(ipchars).split(".");
  return ((b[0] & 0xff) * 16777216) + ((b[1] & 0xff) << 16) + ((b[2] & 0xff) << 8) + (b[3] & 0xff);
}

function alert(message) {
  __cntlm_alert(String(message));
}

var __cntlm_day_names = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
var __cntlm_month_names = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN",
  "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

// Splits a trailing "GMT" off an arguments object: { args: [...], gmt: bool }.
function __cntlm_range_args(argumentsObject) {
  var args = Array.prototype.slice.call(argumentsObject);
  var gmt = args.length > 0 && String(args[args.length - 1]).toUpperCase() === "GMT";
  if (gmt) args.pop();
  return { args: args, gmt: gmt };
}

// Now as { year, month (1-12), day, weekday (0 = Sunday), hour, minute, second }.
function __cntlm_clock(gmt) {
  var t = __cntlm_now(gmt);
  return { year: t[0], month: t[1], day: t[2], weekday: t[3], hour: t[4], minute: t[5], second: t[6] };
}

// True when now lies between start and end, wrapping around when start > end.
function __cntlm_between(start, now, end, inclusiveEnd) {
  var beforeEnd = inclusiveEnd ? now <= end : now < end;
  if (start <= end) return start <= now && beforeEnd;
  return now >= start || beforeEnd;
}

// weekdayRange(wd1 [, wd2] [, "GMT"]): inclusive, wrapping (FRI..MON covers the weekend).
function weekdayRange() {
  var r = __cntlm_range_args(arguments);
  if (r.args.length < 1 || r.args.length > 2) return false;
  var first = __cntlm_day_names.indexOf(String(r.args[0]).toUpperCase());
  var last = r.args.length === 2 ? __cntlm_day_names.indexOf(String(r.args[1]).toUpperCase()) : first;
  if (first < 0 || last < 0) return false;
  return __cntlm_between(first, __cntlm_clock(r.gmt).weekday, last, true);
}

// dateRange(day | month | year, ...): 1 value, or a start and an end of 1 to 3 fields each
// (day, month, year in that order of precedence). Inclusive; day and month ranges wrap.
function dateRange() {
  var r = __cntlm_range_args(arguments);
  var n = r.args.length;
  if (n < 1 || n > 6 || (n > 1 && n % 2 === 1)) return false;
  var fields = [];
  for (var i = 0; i < n; i++) {
    var a = r.args[i];
    var month = __cntlm_month_names.indexOf(String(a).toUpperCase());
    if (month >= 0) {
      fields.push({ kind: "month", value: month + 1 });
      continue;
    }
    var num = Number(a);
    if (String(a) === "" || isNaN(num) || num !== Math.floor(num) || num < 1) return false;
    fields.push({ kind: num <= 31 ? "day" : "year", value: num });
  }
  var half = n === 1 ? 1 : n / 2;
  var start = fields.slice(0, half);
  var end = n === 1 ? start : fields.slice(half);
  var weight = { year: 10000, month: 100, day: 1 };
  var now = __cntlm_clock(r.gmt);
  var seen = {};
  var s = 0, e = 0, c = 0;
  for (var j = 0; j < half; j++) {
    var kind = start[j].kind;
    if (end[j].kind !== kind || seen[kind]) return false;
    seen[kind] = true;
    s += start[j].value * weight[kind];
    e += end[j].value * weight[kind];
    c += now[kind] * weight[kind];
  }
  if (seen.year && s > e) return false;
  return __cntlm_between(s, c, e, true);
}

// timeRange(hour | h1, h2 | h1, m1, h2, m2 | h1, m1, s1, h2, m2, s2 [, "GMT"]): one hour, or
// from start (inclusive) to end (exclusive) at the precision given, wrapping past midnight.
function timeRange() {
  var r = __cntlm_range_args(arguments);
  var n = r.args.length;
  var v = [];
  for (var i = 0; i < n; i++) {
    var num = Number(r.args[i]);
    if (String(r.args[i]) === "" || isNaN(num) || num !== Math.floor(num)) return false;
    v.push(num);
  }
  var now = __cntlm_clock(r.gmt);
  if (n === 1) return now.hour === v[0];
  if (n !== 2 && n !== 4 && n !== 6) return false;
  var per = n / 2;
  var scale = [3600, 60, 1];
  var current = [now.hour, now.minute, now.second];
  var s = 0, e = 0, c = 0;
  for (var j = 0; j < per; j++) {
    s += v[j] * scale[j];
    e += v[per + j] * scale[j];
    c += current[j] * scale[j];
  }
  if (s === e) return c === s;
  return __cntlm_between(s, c, e, false);
}
