function FindProxyForURL(url, host) {
  if (host == "hog.example") {
    var hoard = [];
    for (;;) hoard.push(new Array(100000).fill(host));
  }
  return "DIRECT";
}
