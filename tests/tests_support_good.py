GOOD = """\
chaoskit: 1
title: fuzz base
target:
  compose: {file: docker-compose.yml, project: p}
vars:
  api: http://127.0.0.1:8080
hypothesis:
  - {name: api healthy, probe: http, url: "${api}/health", expect: {status: 200}}
method:
  - fault: container.kill
    target: {service: api}
    when: {log: {service: api, match: 'begin'}, within: 20s}
  - wait: {until: hypothesis, timeout: 60s}
rollbacks:
  - {action: container.start, target: {service: api}}
"""
