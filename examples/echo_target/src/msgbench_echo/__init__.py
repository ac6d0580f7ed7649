"""``echo``: an example msgbench target, installed as its own package (see
``docs/writing-a-target.md`` in msgbench). Broadcast, tasks and rpc over a small asyncio TCP
server (:mod:`.server`) that speaks length-prefixed frames (:mod:`.frames`)."""
