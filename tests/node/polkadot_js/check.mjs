// polkadot.js (@polkadot/api v16) against an integritee dev node: the client-compatibility check.
//
// Usage: node check.mjs ws://127.0.0.1:PORT
// Needs node_modules from ./package.json next to this file (the pytest driver
// tests/node/test_node_polkadot_js.py installs them into a cache dir and links them in).
//
// Connects, reads chain facts and System.Account, signs a mortal Balances.transfer_keep_alive
// and follows it to InBlock and Finalized, checks its events and exact fee, follows new heads,
// reads Teerex and sends EnclaveBridge.invoke. Prints exactly one JSON line on stdout
// ({"ok": true, ...} or {"ok": false, "error": ...}) and exits non-zero on any failure, including
// any warning or error polkadot.js logs (type and metadata warnings such as "Unable to determine
// runtime Call type" mean it misread our metadata; there are none against a correct node).

const TIMEOUT_MS = Number(process.env.CHECK_TIMEOUT_MS || 90_000);
const TEER = 10n ** 12n;
const TRANSFER_AMOUNT = TEER;

// Everything polkadot.js prints is captured here (and echoed to stderr) so that stdout carries only
// the JSON result line and warnings can be asserted on.
const logged = [];
function capture(level) {
  return (...args) => {
    const text = args
      .map((a) => (typeof a === 'string' ? a : a instanceof Error ? a.stack : safeJson(a)))
      .join(' ');
    logged.push({ level, text });
    process.stderr.write(`[${level}] ${text}\n`);
  };
}
for (const level of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[level] = capture(level);
}

function safeJson(value) {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return String(value);
  }
}

class CheckError extends Error {}

// Rejections are not always Errors: a failed WebSocket connect rejects with its error event.
function describe(e) {
  if (e instanceof CheckError) {
    return e.message;
  }
  if (e instanceof Error) {
    return e.stack;
  }
  const detail = e?.message || e?.error?.message || e?.type;
  return detail ? `${e?.constructor?.name ?? 'error'}: ${detail}` : safeJson(e);
}

function check(condition, message) {
  if (!condition) {
    throw new CheckError(message);
  }
}

function eq(actual, expected, what) {
  check(
    actual === expected,
    `${what}: expected ${safeJson(expected)}, got ${safeJson(actual)}`,
  );
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new CheckError(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// polkadot.js logs through console (its logger prefixes the date and a tag such as
// "PORTABLEREGISTRY:"); every warn/error line counts, so a new kind of warning is not missed.
function warnings() {
  return logged.filter((l) => l.level === 'warn' || l.level === 'error');
}

// Signs and sends, resolving once the extrinsic is finalized; rejects on invalid/dropped/usurped,
// on a dispatch error, or when Finalized names a different block than InBlock.
function sendUntilFinalized(api, tx, signer) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let inBlock = null;
    let unsub = null;
    const finish = (fn, value) => {
      if (unsub) {
        unsub();
      }
      fn(value);
    };
    tx.signAndSend(signer, (result) => {
      const { status, dispatchError } = result;
      seen.push(status.type);
      if (status.isInvalid || status.isDropped || status.isUsurped || status.isRetracted) {
        finish(reject, new CheckError(`extrinsic status ${status.type} after ${seen.join(',')}`));
      } else if (status.isInBlock) {
        if (dispatchError) {
          const detail = dispatchError.isModule
            ? (({ section, name }) => `${section}.${name}`)(
                api.registry.findMetaError(dispatchError.asModule),
              )
            : dispatchError.toString();
          finish(reject, new CheckError(`dispatch failed: ${detail}`));
          return;
        }
        inBlock = { hash: status.asInBlock.toHex(), events: result.events, txHash: result.txHash };
      } else if (status.isFinalized) {
        const finalized = status.asFinalized.toHex();
        if (inBlock === null) {
          // polkadot.js handles statuses with switchMap: a finalized notification that arrives
          // while it still fetches the InBlock block's events cancels the InBlock result, so a
          // caller waiting for isInBlock never hears of it.
          const msg =
            `polkadot.js reported Finalized without InBlock (statuses ${seen.join(',')}): ` +
            'the node sent {"finalized"} before the client had fetched the events of the ' +
            '{"inBlock"} block; finality must lag inclusion';
          finish(reject, new CheckError(msg));
        } else if (finalized !== inBlock.hash) {
          finish(reject, new CheckError(`InBlock ${inBlock.hash} but Finalized ${finalized}`));
        } else {
          finish(resolve, { ...inBlock, statuses: seen });
        }
      }
    })
      .then((u) => {
        unsub = u;
      })
      .catch((e) => reject(e));
  });
}

async function extrinsicIndex(api, blockHash, txHash) {
  const block = await api.rpc.chain.getBlock(blockHash);
  const index = block.block.extrinsics.findIndex((x) => x.hash.toHex() === txHash);
  check(index >= 0, `extrinsic ${txHash} not found in block ${blockHash}`);
  return index;
}

function recordsOf(records, index) {
  return records.filter(
    (r) => r.phase.isApplyExtrinsic && r.phase.asApplyExtrinsic.toNumber() === index,
  );
}

function named(events, section, method) {
  return events.filter((e) => e.section === section && e.method === method);
}

async function checkTransfer(api, alice, bob) {
  const tx = api.tx.balances.transferKeepAlive(bob.address, TRANSFER_AMOUNT);
  const info = await tx.paymentInfo(alice);
  const predictedFee = info.partialFee.toBigInt();
  check(predictedFee > 0n, `paymentInfo partialFee ${predictedFee} must be > 0`);

  const sent = await sendUntilFinalized(api, tx, alice);
  check(tx.era.isMortalEra, `default era is not mortal: ${tx.era.toString()}`);
  const era = tx.era.asMortalEra;

  const blockHash = sent.hash;
  const index = await extrinsicIndex(api, blockHash, sent.txHash.toHex());
  // Events as an explorer reads them: System.Events in storage at the inclusion block.
  const records = await api.query.system.events.at(blockHash);
  const ownRecords = recordsOf(records, index);
  const events = ownRecords.map((r) => r.event);
  const transfers = named(events, 'balances', 'Transfer');
  eq(transfers.length, 1, 'balances.Transfer events');
  const [from, to, amount] = transfers[0].data;
  eq(from.toString(), alice.address, 'Transfer.from');
  eq(to.toString(), bob.address, 'Transfer.to');
  eq(amount.toBigInt(), TRANSFER_AMOUNT, 'Transfer.amount');
  eq(named(events, 'system', 'ExtrinsicSuccess').length, 1, 'system.ExtrinsicSuccess events');
  const feePaid = named(events, 'transactionPayment', 'TransactionFeePaid');
  eq(feePaid.length, 1, 'transactionPayment.TransactionFeePaid events');
  const [who, actualFee, tip] = feePaid[0].data;
  eq(who.toString(), alice.address, 'TransactionFeePaid.who');
  eq(tip.toBigInt(), 0n, 'TransactionFeePaid.tip');
  eq(actualFee.toBigInt(), predictedFee, 'TransactionFeePaid.actual_fee vs paymentInfo.partialFee');

  // The same figures as balances: parent of the inclusion block vs the block itself.
  const header = await api.rpc.chain.getHeader(blockHash);
  const parentHash = header.parentHash.toHex();
  const [aliceBefore, aliceAfter, bobBefore, bobAfter] = await Promise.all([
    api.query.system.account.at(parentHash, alice.address),
    api.query.system.account.at(blockHash, alice.address),
    api.query.system.account.at(parentHash, bob.address),
    api.query.system.account.at(blockHash, bob.address),
  ]);
  eq(
    aliceBefore.data.free.toBigInt() - aliceAfter.data.free.toBigInt(),
    TRANSFER_AMOUNT + predictedFee,
    'Alice balance difference',
  );
  eq(bobAfter.data.free.toBigInt() - bobBefore.data.free.toBigInt(), TRANSFER_AMOUNT, 'Bob gain');
  eq(aliceAfter.nonce.toNumber(), aliceBefore.nonce.toNumber() + 1, 'Alice nonce increment');
  // The events polkadot.js decoded itself on InBlock must agree with the storage read.
  eq(
    safeJson(sent.events.map((r) => r.toJSON())),
    safeJson(ownRecords.map((r) => r.toJSON())),
    'InBlock events vs System.Events at the block',
  );

  return {
    block: blockHash,
    blockNumber: header.number.toNumber(),
    extrinsicIndex: index,
    txHash: sent.txHash.toHex(),
    statuses: sent.statuses,
    era: { period: era.period.toNumber(), phase: era.phase.toNumber() },
    amount: amount.toString(),
    partialFee: predictedFee.toString(),
    actualFee: actualFee.toString(),
    weight: info.weight.toJSON(),
    class: info.class.toString(),
  };
}

async function checkNewHeads(api) {
  const heads = [];
  let unsub = null;
  await withTimeout(
    new Promise((resolve, reject) => {
      api.rpc.chain
        .subscribeNewHeads((header) => {
          heads.push({ number: header.number.toNumber(), hash: header.hash.toHex() });
          if (heads.length === 2) {
            resolve();
          }
        })
        .then((u) => {
          unsub = u;
        })
        .catch(reject);
    }),
    20_000,
    'two new heads',
  );
  if (unsub) {
    unsub();
  }
  check(heads[1].number > heads[0].number, `heads not increasing: ${safeJson(heads)}`);
  // polkadot.js hashes the header itself; it must be the hash the node serves for that number.
  for (const h of heads) {
    eq((await api.rpc.chain.getBlockHash(h.number)).toHex(), h.hash, `hash of block ${h.number}`);
  }
  return heads;
}

async function checkInvoke(api, signer) {
  const shard = `0x${'ab'.repeat(32)}`;
  const tx = api.tx.enclaveBridge.invoke({ shard, cyphertext: '0x0102030405' });
  const sent = await sendUntilFinalized(api, tx, signer);
  const registered = sent.events
    .map((r) => r.event)
    .filter((e) => api.events.enclaveBridge.IndirectInvocationRegistered.is(e));
  eq(registered.length, 1, 'enclaveBridge.IndirectInvocationRegistered events');
  eq(registered[0].data[0].toHex(), shard, 'IndirectInvocationRegistered shard');
  return { block: sent.hash, shard, statuses: sent.statuses };
}

async function run(url) {
  const started = Date.now();
  const { ApiPromise, WsProvider, Keyring } = await import('@polkadot/api');
  const { cryptoWaitReady } = await import('@polkadot/util-crypto');
  await cryptoWaitReady();

  const provider = new WsProvider(url);
  const api = await withTimeout(
    ApiPromise.create({ provider, throwOnConnect: true }),
    30_000,
    'ApiPromise.create',
  );
  const result = {};
  try {
    result.connectMs = Date.now() - started;
    const [chain, properties, genesis] = await Promise.all([
      api.rpc.system.chain(),
      api.rpc.system.properties(),
      api.rpc.chain.getBlockHash(0),
    ]);
    const rv = api.runtimeVersion;
    result.chain = chain.toString();
    result.properties = properties.toJSON();
    result.runtime = {
      specName: rv.specName.toString(),
      specVersion: rv.specVersion.toNumber(),
      transactionVersion: rv.transactionVersion.toNumber(),
    };
    result.genesisHash = genesis.toHex();
    eq(api.genesisHash.toHex(), result.genesisHash, 'api.genesisHash');
    result.metadataVersion = api.runtimeMetadata.version;
    result.ss58Prefix = api.consts.system.ss58Prefix.toNumber();
    result.registryChainSS58 = api.registry.chainSS58;
    result.signedExtensions = api.registry.signedExtensions;

    const keyring = new Keyring({ type: 'sr25519', ss58Format: result.ss58Prefix });
    const alice = keyring.addFromUri('//Alice');
    const bob = keyring.addFromUri('//Bob');
    const charlie = keyring.addFromUri('//Charlie');

    const account = await api.query.system.account(alice.address);
    check(account.data.free.toBigInt() > TRANSFER_AMOUNT, 'Alice has no funds');
    check(account.providers.toNumber() >= 1, 'Alice has no providers');
    result.alice = {
      address: alice.address,
      nonce: account.nonce.toNumber(),
      free: account.data.free.toString(),
    };

    result.allowSkippingAttestation = (await api.query.teerex.allowSkippingAttestation()).toJSON();
    eq(result.allowSkippingAttestation, true, 'teerex.allowSkippingAttestation on dev');

    // Independent signers, so the three run concurrently without nonce races.
    const [transfer, heads, invoke] = await withTimeout(
      Promise.all([checkTransfer(api, alice, bob), checkNewHeads(api), checkInvoke(api, charlie)]),
      60_000,
      'transfer, new heads and invoke',
    );
    Object.assign(result, { transfer, heads, invoke });
  } finally {
    await api.disconnect();
  }
  const bad = warnings();
  check(bad.length === 0, `polkadot.js warned: ${bad.map((l) => l.text).join(' | ')}`);
  result.warnings = bad;
  result.totalMs = Date.now() - started;
  return result;
}

async function main() {
  const url = process.argv[2];
  if (!url || !/^wss?:\/\//.test(url)) {
    const usage = { ok: false, error: 'usage: node check.mjs ws://HOST:PORT' };
    process.stdout.write(`${safeJson(usage)}\n`, () => process.exit(2));
    return;
  }
  let code = 0;
  let out;
  try {
    const result = await withTimeout(run(url), TIMEOUT_MS, 'the whole check');
    out = { ok: true, ...result };
  } catch (e) {
    code = 1;
    out = {
      ok: false,
      error: describe(e),
      warnings: warnings(),
    };
  }
  // Exit explicitly (a failed check may leave sockets or timers behind), once stdout is flushed.
  process.stdout.write(`${safeJson(out)}\n`, () => process.exit(code));
}

main();
