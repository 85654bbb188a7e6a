#!/usr/bin/env node
// The Pinning Service API on 127.0.0.1:<argv[2]>; the access token comes from PIN_TOKEN (never argv).
'use strict';
const http = require('http');
const { setup } = require('mock-ipfs-pinning-service');

const port = Number(process.argv[2]);
setup({ token: process.env.PIN_TOKEN, loglevel: 'error' }).then((service) => {
  const server = http.createServer(service);
  server.listen(port, '127.0.0.1', () => console.log(`pinning service on 127.0.0.1:${port}`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
});
