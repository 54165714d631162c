// The Wechaty puppet service the WeChat bridge's tests talk to: the real npm `PuppetServer`
// (gRPC, TLS disabled) wrapping `PuppetMock`, plus a small JSON-over-HTTP control API the Rust
// harness (tests/src/wechaty.rs) uses to script the mock.
//
//   node server.mjs --grpc-port 8788 --control-port 8789 --token <token>
//
// The script prints `READY` on stdout once both servers listen.
//
// Control API (all bodies JSON, all answers JSON):
//   GET  /health                      {grpc, loggedIn, selfId, streaming}
//   POST /contacts                    {id?, name, alias?, weixin?, avatarFile?: {name, base64}} -> {id}
//   POST /rooms                       {id?, topic, members: [id], aliases: {id: alias}} -> {id}
//   POST /freeze                      {frozen}  leave pings (Ding) unanswered, as a hung service would
//   POST /avatars                     {id, name, base64 | url}  a contact's or room's avatar
//                                     (inline, or a URL file box the client must download)
//   POST /scan                        {qrcode, status}  (status: wechaty-puppet ScanStatus number)
//   POST /login                       {id}
//   POST /logout                      {}
//   POST /messages                    {from, to? | room?, text?, mentions?: [id], type? (also for files:
//                                      by default from the name: image, video, voice or attachment),
//                                      file?: {name, base64},
//                                      card?: {kind: url|miniProgram|contact|location, payload}} -> {id}
//                                     (a contact card's payload is the shared contact's id)
//   POST /recall                      {id}  the original talker recalls message `id`  -> {id}
//   POST /rooms/topic                 {room, topic, by}
//   POST /rooms/join                  {room, members: [id], by}
//   POST /rooms/leave                 {room, members: [id], by}
//   GET  /sent                        [{id, conversationId, text, mentionIds, file}]  what the client sent
//                                     (file: {name, base64, size, boxType}: the file-box type it came in)
//   GET  /recalled                    [id]  messages the client recalled
//   POST /server/stop, /server/start  stop or start the gRPC PuppetServer (the puppet keeps its state)
//   POST /puppet/reset                {relogin}  the puppet resets itself (`reset()`: stop, then start,
//                                     as its watchdog does): clients see LOGOUT "puppet stop()"; with
//                                     `relogin` it then logs the same account in again (LOGIN), as a
//                                     puppet that keeps its session does
//   POST /events/reset                {data}  writes an EVENT_TYPE_RESET frame on the open event stream
//                                     -> {written}. PuppetServer 1.19.9 never sends RESET itself (its
//                                     EventStreamManager drops the puppet's `reset` event), so this
//                                     writes the frame on the stream call the server holds, captured
//                                     when the server registers its Event handler
import http from 'node:http';
import { parseArgs } from 'node:util';

import { FileBox } from 'file-box';
import * as PUPPET from 'wechaty-puppet';
import { PuppetMock, mock } from 'wechaty-puppet-mock';
import { PuppetServer } from 'wechaty-puppet-service';
// A dependency of wechaty-puppet-service (the same copy it uses), for the RESET frame.
import { grpc, puppet as grpcPuppet } from 'wechaty-grpc';

const { values: args } = parseArgs({
  options: {
    'grpc-port': { type: 'string', default: process.env.WECHATY_TEST_GRPC_PORT ?? '8788' },
    'control-port': { type: 'string', default: process.env.WECHATY_TEST_CONTROL_PORT ?? '8789' },
    token: { type: 'string', default: process.env.WECHATY_TEST_TOKEN ?? 'test-token' },
  },
});

let nextId = 1;
const newId = (prefix) => `${prefix}${Date.now().toString(36)}${(nextId++).toString(36)}`;

/** What the bridge sent through the puppet, in order. */
const sent = [];
/** Ids of messages the bridge recalled. */
const recalled = [];
/** Room member aliases: roomId -> (contactId -> alias). */
const roomAliases = new Map();
/** Cards of card messages: messageId -> payload (a contact id for contact cards). */
const cards = new Map();
/** Contact and room avatars: id -> {name, base64} or {name, url}. */
const avatars = new Map();

/** The file box of an avatar: inline, or a URL (passed through by the service as is). */
const avatarBox = (avatar) => (avatar.url
  ? FileBox.fromUrl(avatar.url, { name: avatar.name })
  : FileBox.fromBase64(avatar.base64, avatar.name));

/** wechaty-puppet's message type for a file, by its name. */
const fileType = (name) => {
  if (/\.(png|jpe?g|gif)$/i.test(name)) {
    return PUPPET.types.Message.Image;
  }
  if (/\.(mp4|mov)$/i.test(name)) {
    return PUPPET.types.Message.Video;
  }
  if (/\.(mp3|silk|amr|ogg)$/i.test(name)) {
    return PUPPET.types.Message.Audio;
  }
  return PUPPET.types.Message.Attachment;
};

/** Whether pings go unanswered (a hung service, for the heartbeat watchdog). */
let frozen = false;

/** PuppetMock with the behaviour a real puppet has and the stock mock lacks. */
class ScriptedPuppet extends PuppetMock {
  ding(data) {
    if (frozen) {
      return;
    }
    return super.ding(data);
  }

  async contactAlias(contactId, alias) {
    const payload = this.mocker.contactPayload(contactId);
    if (typeof alias === 'undefined') {
      return payload.alias ?? '';
    }
    payload.alias = alias;
  }

  async contactAvatar(contactId, file) {
    if (file) {
      return;
    }
    const avatar = avatars.get(contactId);
    if (!avatar) {
      return FileBox.fromQRCode(`avatar:${contactId}`);
    }
    return avatarBox(avatar);
  }

  async messageUrl(messageId) {
    return cards.get(messageId) ?? super.messageUrl(messageId);
  }

  async messageMiniProgram(messageId) {
    return cards.get(messageId) ?? super.messageMiniProgram(messageId);
  }

  async messageContact(messageId) {
    return cards.get(messageId) ?? super.messageContact(messageId);
  }

  async messageLocation(messageId) {
    return cards.get(messageId) ?? super.messageLocation(messageId);
  }

  async roomAvatar(roomId) {
    const avatar = avatars.get(roomId);
    if (!avatar) {
      return super.roomAvatar(roomId);
    }
    return avatarBox(avatar);
  }

  async roomTopic(roomId, topic) {
    const payload = this.mocker.roomPayload(roomId);
    if (typeof topic === 'undefined') {
      return payload.topic;
    }
    payload.topic = topic;
  }

  async roomMemberRawPayload(roomId, contactId) {
    const contact = this.mocker.contactPayload(contactId);
    return {
      avatar: contact.avatar,
      id: contactId,
      name: contact.name,
      roomAlias: roomAliases.get(roomId)?.get(contactId) ?? '',
    };
  }

  async messageRecall(messageId) {
    const payload = this.mocker.messagePayload(messageId);
    if (payload.talkerId !== this.currentUserId) {
      return false;
    }
    recalled.push(messageId);
    return true;
  }

  /** Records an outgoing message, echoes it as WeChat does and returns its id. */
  async sendAndEcho(conversationId, fields, record) {
    if (!this.isLoggedIn) {
      throw new Error('not logged in');
    }
    const id = newId('sent-');
    sent.push({ id, conversationId, ...record });
    const base = { id, talkerId: this.currentUserId, timestamp: Date.now(), ...fields };
    const payload = /@/.test(conversationId)
      ? { ...base, roomId: conversationId, mentionIdList: record.mentionIds ?? [] }
      : { ...base, listenerId: conversationId };
    this.mocker.MessageMock.create(payload);
    this.emit('message', { messageId: id });
    return id;
  }

  async messageSendText(conversationId, text, mentionIdList) {
    return this.sendAndEcho(
      conversationId,
      { type: PUPPET.types.Message.Text, text },
      { text, mentionIds: mentionIdList ?? [], file: null },
    );
  }

  async messageSendFile(conversationId, fileBox) {
    const buffer = await fileBox.toBuffer();
    const base64 = buffer.toString('base64');
    const name = fileBox.name;
    const type = fileType(name);
    const id = await this.sendAndEcho(
      conversationId,
      { type, filename: name },
      { text: null, mentionIds: [], file: { name, base64, size: buffer.length, boxType: fileBox.type } },
    );
    this.mocker.cacheFileBoxPayload.set(id, FileBox.fromBase64(base64, name).toJSON());
    return id;
  }
}

/** Event stream calls the PuppetServer answered, newest last (for /events/reset). */
const eventCalls = [];

// Wraps the Event handler of every Puppet service the server registers, to see its calls.
const addService = grpc.Server.prototype.addService;
grpc.Server.prototype.addService = function addServiceSeeingEvents(service, implementation) {
  if (service !== grpcPuppet.PuppetService) {
    return addService.call(this, service, implementation);
  }
  const event = implementation.event;
  const seeing = {
    ...implementation,
    event(call) {
      eventCalls.push(call);
      call.on('close', () => {
        const at = eventCalls.indexOf(call);
        if (at >= 0) {
          eventCalls.splice(at, 1);
        }
      });
      return event.call(this, call);
    },
  };
  return addService.call(this, service, seeing);
};

const mocker = new mock.Mocker();
const puppet = new ScriptedPuppet({ mocker });
let server = null;

async function startServer() {
  if (server) {
    return;
  }
  const candidate = new PuppetServer({
    endpoint: `127.0.0.1:${args['grpc-port']}`,
    puppet,
    token: args.token,
    tls: { disable: true },
  });
  await candidate.start();
  server = candidate;
}

async function stopServer() {
  if (!server) {
    return;
  }
  const old = server;
  server = null;
  await old.stop();
}

/** Creates an incoming message from `from` and emits MESSAGE for it; returns its id. */
function incoming({ from, to, room, text, mentions, file, type, id, card }) {
  const messageId = id ?? newId('msg-');
  const base = { id: messageId, talkerId: from, timestamp: Date.now() };
  const cardTypes = {
    url: PUPPET.types.Message.Url,
    miniProgram: PUPPET.types.Message.MiniProgram,
    contact: PUPPET.types.Message.Contact,
    location: PUPPET.types.Message.Location,
  };
  if (card) {
    cards.set(messageId, card.payload);
    base.text = text ?? '';
    base.type = cardTypes[card.kind];
  } else if (file) {
    const box = FileBox.fromBase64(file.base64, file.name);
    mocker.cacheFileBoxPayload.set(messageId, box.toJSON());
    base.filename = file.name;
    base.type = type ?? fileType(file.name);
  } else {
    base.text = text ?? '';
    base.type = type ?? PUPPET.types.Message.Text;
  }
  const payload = room
    ? { ...base, roomId: room, mentionIdList: mentions ?? [] }
    : { ...base, listenerId: to ?? puppet.currentUserId };
  mocker.MessageMock.create(payload);
  puppet.emit('message', { messageId });
  return messageId;
}

const routes = {
  'GET /health': async () => ({
    grpc: server !== null,
    loggedIn: puppet.isLoggedIn,
    selfId: puppet.isLoggedIn ? puppet.currentUserId : null,
    streaming: puppet.listenerCount('message') > 0,
  }),
  'POST /contacts': async (body) => {
    const contact = mocker.createContact({
      id: body.id ?? newId('wxid_'),
      name: body.name,
      alias: body.alias ?? '',
      avatar: body.avatar ?? '',
      weixin: body.weixin ?? '',
    });
    if (body.avatarFile) {
      avatars.set(contact.id, body.avatarFile);
    }
    return { id: contact.id };
  },
  'POST /rooms': async (body) => {
    const room = mocker.createRoom({
      id: body.id ?? `${newId('')}@chatroom`,
      topic: body.topic,
      memberIdList: [...(body.members ?? [])],
      adminIdList: [],
      avatar: '',
    });
    roomAliases.set(room.id, new Map(Object.entries(body.aliases ?? {})));
    return { id: room.id };
  },
  'POST /freeze': async (body) => {
    frozen = Boolean(body.frozen);
    return {};
  },
  'POST /avatars': async (body) => {
    avatars.set(body.id, body.url ? { name: body.name, url: body.url } : { name: body.name, base64: body.base64 });
    return {};
  },
  'POST /scan': async (body) => {
    mocker.scan(body.qrcode, body.status ?? PUPPET.types.ScanStatus.Waiting);
    return {};
  },
  'POST /login': async (body) => {
    mocker.login(mocker.ContactMock.load(body.id));
    return {};
  },
  'POST /logout': async () => {
    await puppet.logout();
    return {};
  },
  'POST /messages': async (body) => ({ id: incoming(body) }),
  'POST /recall': async (body) => {
    const original = mocker.messagePayload(body.id);
    const id = incoming({
      from: original.talkerId,
      to: original.listenerId,
      room: original.roomId,
      text: body.id,
      type: PUPPET.types.Message.Recalled,
    });
    return { id };
  },
  'POST /rooms/topic': async (body) => {
    mocker.RoomMock.load(body.room).topic(body.topic).by(mocker.ContactMock.load(body.by));
    return {};
  },
  'POST /rooms/join': async (body) => {
    const room = mocker.RoomMock.load(body.room);
    room.add(...body.members.map((id) => mocker.ContactMock.load(id))).by(mocker.ContactMock.load(body.by));
    return {};
  },
  'POST /rooms/leave': async (body) => {
    const room = mocker.RoomMock.load(body.room);
    room.remove(...body.members.map((id) => mocker.ContactMock.load(id))).by(mocker.ContactMock.load(body.by));
    return {};
  },
  'POST /puppet/reset': async (body) => {
    const self = puppet.isLoggedIn ? puppet.currentUserId : null;
    await puppet.reset();
    if (body.relogin && self) {
      mocker.login(mocker.ContactMock.load(self));
    }
    return {};
  },
  'POST /events/reset': async (body) => {
    const call = eventCalls.filter((c) => !c.cancelled && c.writable).at(-1);
    if (!call) {
      return { written: false };
    }
    const response = new grpcPuppet.EventResponse();
    response.setType(grpcPuppet.EventType.EVENT_TYPE_RESET);
    response.setPayload(JSON.stringify({ data: body.data ?? 'reset' }));
    call.write(response);
    return { written: true };
  },
  'GET /sent': async () => sent,
  'GET /recalled': async () => recalled,
  'POST /server/stop': async () => {
    await stopServer();
    return {};
  },
  'POST /server/start': async () => {
    await startServer();
    return {};
  },
};

const control = http.createServer((req, res) => {
  let data = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { data += chunk; });
  req.on('end', async () => {
    const route = routes[`${req.method} ${req.url}`];
    const reply = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (!route) {
      reply(404, { error: `no route ${req.method} ${req.url}` });
      return;
    }
    try {
      reply(200, await route(data ? JSON.parse(data) : {}));
    } catch (error) {
      reply(500, { error: String(error?.stack ?? error) });
    }
  });
});

await startServer();
await new Promise((resolve, reject) => {
  control.once('error', reject);
  control.listen(Number(args['control-port']), '127.0.0.1', resolve);
});
console.log('READY');

const shutdown = async () => {
  control.close();
  await stopServer().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
