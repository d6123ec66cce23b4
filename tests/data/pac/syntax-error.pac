function FindProxyForURL(url, host) {
  if (host == "a.example" {
    return "DIRECT";
  }
}
