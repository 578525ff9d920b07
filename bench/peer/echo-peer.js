// A bare grpc-js bidi echo server in its own process, the reference for task dispatch: the same
// round trip a task call makes (a small message out, a small message back) without dpl.
// Prints "ready <port>".
'use strict';
const grpc = require('@grpc/grpc-js');

const service = {
  Echo: {
    path: '/bench.Echo/Echo',
    requestStream: true,
    responseStream: true,
    requestSerialize: (b) => b,
    requestDeserialize: (b) => b,
    responseSerialize: (b) => b,
    responseDeserialize: (b) => b,
  },
};
const server = new grpc.Server();
server.addService(service, {
  Echo(call) {
    call.on('data', (m) => call.write(m));
    call.on('end', () => call.end());
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`ready ${port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
