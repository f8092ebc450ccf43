export default { async fetch(req: Request) { return Response.json({ emulator: true, url: req.url, key: req.headers.get("x-api-key") }); } };
