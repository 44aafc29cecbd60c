#!/bin/sh
# busybox httpd serving /www on port 8080. Without -f it binds its port, then goes to
# the background: once it returns, the port accepts connections, and the console says
# so (the marker a platform may wait for instead of an HTTP answer).
httpd -p 8080 -h /www || exit 1
echo "SERVICE_READY"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
