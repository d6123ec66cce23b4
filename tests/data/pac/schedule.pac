// Office hours through the parent, otherwise DIRECT; exercises the three *Range helpers.
function FindProxyForURL(url, host) {
  if (host == "weekday") return weekdayRange("MON", "FRI") ? "PROXY office:1" : "DIRECT";
  if (host == "weekend") return weekdayRange("SAT", "SUN") ? "PROXY weekend:1" : "DIRECT";
  if (host == "wrap") return weekdayRange("FRI", "MON") ? "PROXY wrap:1" : "DIRECT";
  if (host == "gmt-day") return weekdayRange("WED", "GMT") ? "PROXY gmt:1" : "DIRECT";
  if (host == "hours") return timeRange(9, 17) ? "PROXY hours:1" : "DIRECT";
  if (host == "night") return timeRange(22, 6) ? "PROXY night:1" : "DIRECT";
  if (host == "minutes") return timeRange(8, 30, 12, 0) ? "PROXY minutes:1" : "DIRECT";
  if (host == "gmt-hour") return timeRange(12, "GMT") ? "PROXY gmt:1" : "DIRECT";
  if (host == "month") return dateRange("JUN", "AUG") ? "PROXY summer:1" : "DIRECT";
  if (host == "winter") return dateRange("DEC", "FEB") ? "PROXY winter:1" : "DIRECT";
  if (host == "day") return dateRange(1, 15) ? "PROXY first-half:1" : "DIRECT";
  if (host == "year") return dateRange(2026) ? "PROXY y2026:1" : "DIRECT";
  if (host == "span") return dateRange(1, "JUL", 2026, 15, "JUL", 2026) ? "PROXY span:1" : "DIRECT";
  if (host == "month-year") return dateRange("JUN", 2026, "JAN", 2027) ? "PROXY my:1" : "DIRECT";
  return "DIRECT";
}
