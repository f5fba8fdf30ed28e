/* SIMULATED WeChat chat page (development only), GET /simulator: sends what a resident
 * types through POST /simulator/api/send and polls GET /simulator/api/inbox for the
 * customer-service messages the gateway sent. Text only ever goes in as textContent. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const chat = $("chat"), input = $("text");
  const PLACES = [
    ["招宝山街道总浦桥社区", 29.9526, 121.7135],
    ["骆驼街道", 29.9890, 121.6100],
    ["庄市街道", 29.9410, 121.6400],
    ["蛟川街道", 29.9700, 121.7000],
  ];
  let openid = localStorage.getItem("jmtSimOpenid") ||
    "sim-" + Math.random().toString(16).slice(2, 6);
  let lastId = 0;
  localStorage.setItem("jmtSimOpenid", openid);
  $("openid").value = openid;

  function add(el) { chat.appendChild(el); chat.scrollTop = chat.scrollHeight; }
  function note(text) {
    add(div("note", text));
  }
  function div(className, text) {
    const el = document.createElement("div");
    el.className = className;
    el.textContent = text;
    return el;
  }
  function bubble(who, text, tag) {
    const row = div("row " + who, "");
    const body = div("bubble", text);
    if (tag) {
      const small = document.createElement("span");
      small.className = "tag";
      small.textContent = tag;
      body.appendChild(small);
    }
    row.append(div("avatar", who === "me" ? "我" : "警"), body);
    add(row);
  }

  async function send(message) {
    const encrypted = $("aes").checked;
    try {
      const r = await fetch("/simulator/api/send", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({openid, encrypted, ...message}),
      });
      const data = await r.json();
      if (!r.ok) return note("模拟器拒绝：" + JSON.stringify(data.detail));
      if (encrypted && !data.encrypted) note("未配置 WECHAT_ENCODING_AES_KEY，已按明文发送");
      if (data.status !== 200) note(`公众号返回 HTTP ${data.status}：${data.raw}`);
      else if (data.error) note("回复无法解析：" + data.error);
      else if (data.reply) bubble("them", data.reply);
    } catch (e) {
      note("网络错误：" + e);
    }
  }

  function sendText() {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    bubble("me", text);
    send({type: "text", content: text});
  }
  function sendPlace(label, lat, lng) {
    $("places").hidden = true;
    bubble("me", `📍 ${label || "我的位置"}\n(${lat.toFixed(4)}, ${lng.toFixed(4)})`);
    send({type: "location", lat, lng, label});
  }

  $("send").onclick = sendText;
  input.onkeydown = (e) => {
    if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); sendText(); }
  };
  $("voice").onclick = () => {
    const text = input.value.trim();
    input.value = "";
    bubble("me", "🎤 语音\n语音识别：" + (text || "（无）"));
    send({type: "voice", recognition: text});
  };
  $("subscribe").onclick = () => {
    note("你关注了公众号");
    send({type: "event", event: "subscribe"});
  };
  for (const b of document.querySelectorAll(".menu button")) {
    b.onclick = () => {
      note(`点击菜单「${b.textContent}」`);
      send({type: "event", event: "CLICK", key: b.dataset.key});
    };
  }
  $("pin").onclick = () => {
    const box = $("places");
    box.replaceChildren();
    for (const [name, lat, lng] of PLACES) {
      const b = document.createElement("button");
      b.textContent = "📍 " + name;
      b.onclick = () => sendPlace("浙江省宁波市镇海区" + name, lat, lng);
      box.appendChild(b);
    }
    if (navigator.geolocation) {
      const b = document.createElement("button");
      b.textContent = "🧭 我的当前位置（浏览器定位）";
      b.onclick = () => navigator.geolocation.getCurrentPosition(
        (p) => sendPlace("", p.coords.latitude, p.coords.longitude),
        (e) => { box.hidden = true; note("无法定位：" + e.message); },
        {timeout: 10000});
      box.appendChild(b);
    }
    box.hidden = !box.hidden;
  };
  $("openid").onchange = () => {
    openid = $("openid").value.trim() || openid;
    $("openid").value = openid;
    localStorage.setItem("jmtSimOpenid", openid);
    lastId = 0;
    chat.replaceChildren();
    note("当前用户 " + openid);
  };

  async function poll() {
    const who = openid;
    try {
      const r = await fetch(`/simulator/api/inbox?openid=${encodeURIComponent(who)}&after=${lastId}`);
      if (r.ok && who === openid) {
        for (const m of await r.json()) {
          lastId = Math.max(lastId, m.id);
          bubble("them", m.content, "客服消息");
        }
      }
    } catch (e) { /* the gateway is restarting: try again */ }
    setTimeout(poll, 1500);
  }
  poll();
})();
