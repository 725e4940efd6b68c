"""The neo4j image's pins: one Neo4j 5.26.x for the server and its Bolt connector, APOC of the same line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from yuxi_k8s.app import images

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _pom() -> ET.Element:
    return ET.parse(images.NEO4J_FILES / "pom.xml").getroot()


def test_neo4j_and_bolt_share_one_pinned_526_version() -> None:
    version = images.neo4j_version()
    assert re.fullmatch(r"5\.26\.\d+", version), version  # upstream's compose pins neo4j:5.26
    deps = {
        (
            d.findtext("m:groupId", namespaces=POM_NS),
            d.findtext("m:artifactId", namespaces=POM_NS),
        ): d.findtext("m:version", namespaces=POM_NS)
        for d in _pom().iterfind("m:dependencies/m:dependency", POM_NS)
    }
    assert deps[("org.neo4j", "neo4j")] == deps[("org.neo4j", "neo4j-bolt")] == "${neo4j.version}"
    apoc = _pom().findtext("m:properties/m:apoc.version", namespaces=POM_NS) or ""
    assert apoc.startswith("5.26."), apoc  # APOC runs on the Neo4j line of its first two numbers
    assert deps[("org.neo4j.procedure", "apoc-core")] == deps[("org.neo4j.procedure", "apoc-common")]


def test_the_entry_point_loads_plugins_from_the_classpath_too() -> None:
    """APOC's extension (its injectable config) is found on the classpath, its procedures in plugins/."""
    classpath = images.NEO4J_COMMAND[images.NEO4J_COMMAND.index("-cp") + 1].split(":")
    assert classpath == ["/opt/neo4j/launcher", "/opt/neo4j/plugins/*", "/opt/neo4j/lib/*"]
    assert images.NEO4J_COMMAND[-1] == "Launcher"
    assert "-Xmx" not in " ".join(images.NEO4J_COMMAND)  # the heap is JDK_JAVA_OPTIONS, changeable alone
    assert "-Xmx384m" in images.NEO4J_JVM_MEMORY
